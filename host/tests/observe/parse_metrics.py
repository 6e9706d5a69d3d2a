"""Parse Prometheus text from stdin with prometheus_client's own parser; print JSON.

Exits non-zero (with the parser's message) if the text is not valid exposition format.
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

families = {}
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = family.type
    for s in family.samples:
        samples.append({"name": s.name, "labels": s.labels, "value": s.value})
json.dump({"families": families, "samples": samples}, sys.stdout)
