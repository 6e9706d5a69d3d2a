//! `[[recording.storage]]`: the S3-compatible buckets recordings are uploaded to, with the
//! checks serde cannot express (errors name the key).

use serde::{Deserialize, Serialize};

/// Smallest part S3 accepts in a multipart upload (all but the last part).
pub const MIN_PART_SIZE_MIB: u64 = 5;
/// Default part size: a file larger than this is uploaded in parts of this size, so one
/// failed part costs one part's retry, not the whole file's.
pub const DEFAULT_PART_SIZE_MIB: u64 = 16;
/// S3's largest part.
pub const MAX_PART_SIZE_MIB: u64 = 5 * 1024;

/// One storage: a bucket on an S3-compatible endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Unique; what a recorder plugin's `storage` names. `A-Z a-z 0-9 - _`, 1–64 characters.
    pub name: String,
    /// `https://...` of any S3-compatible service (MinIO, Garage, R2, Ceph...); empty: AWS's
    /// regional endpoint.
    #[serde(default)]
    pub endpoint: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    /// Prepended to every object key (e.g. `live/`).
    #[serde(default)]
    pub prefix: String,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key` (what most
    /// self-hosted servers need).
    #[serde(default)]
    pub path_style: bool,
    /// Static credentials (both or neither). Neither: the standard AWS environment
    /// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, web identity, ECS/EC2 roles).
    #[serde(default)]
    pub access_key_id: String,
    #[serde(default)]
    pub secret_access_key: String,
    /// Remove the local file once its upload is confirmed.
    #[serde(default)]
    pub delete_after_upload: bool,
    /// Files larger than this go up in parts of this size (MiB, 5–5120).
    #[serde(default = "default_part_size")]
    pub part_size_mib: u64,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_part_size() -> u64 {
    DEFAULT_PART_SIZE_MIB
}

impl StorageConfig {
    pub fn part_size(&self) -> u64 {
        self.part_size_mib * 1024 * 1024
    }
}

/// Check every storage: `Err((key, message))`.
pub fn validate(storages: &[StorageConfig]) -> Result<(), (&'static str, String)> {
    let mut names = std::collections::HashSet::new();
    for s in storages {
        let valid_name = !s.name.is_empty()
            && s.name.len() <= 64
            && s.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name {
            return Err((
                "recording.storage.name",
                format!("{:?}: expected 1-64 of A-Z a-z 0-9 - _", s.name),
            ));
        }
        if !names.insert(s.name.as_str()) {
            return Err((
                "recording.storage.name",
                format!("{:?} is configured twice", s.name),
            ));
        }
        if s.bucket.is_empty() {
            return Err((
                "recording.storage.bucket",
                format!("storage {:?} names no bucket", s.name),
            ));
        }
        if s.region.is_empty() {
            return Err((
                "recording.storage.region",
                format!("storage {:?}: must not be empty", s.name),
            ));
        }
        let endpoint_ok = s.endpoint.is_empty()
            || s.endpoint.starts_with("http://")
            || s.endpoint.starts_with("https://");
        if !endpoint_ok {
            return Err((
                "recording.storage.endpoint",
                format!(
                    "storage {:?}: expected an http:// or https:// URL, got {:?}",
                    s.name, s.endpoint
                ),
            ));
        }
        if s.access_key_id.is_empty() != s.secret_access_key.is_empty() {
            return Err((
                "recording.storage.access_key_id",
                format!(
                    "storage {:?}: give access_key_id and secret_access_key together, or \
                     neither (the standard AWS environment)",
                    s.name
                ),
            ));
        }
        if !(MIN_PART_SIZE_MIB..=MAX_PART_SIZE_MIB).contains(&s.part_size_mib) {
            return Err((
                "recording.storage.part_size_mib",
                format!(
                    "storage {:?}: {} is outside {MIN_PART_SIZE_MIB}-{MAX_PART_SIZE_MIB}",
                    s.name, s.part_size_mib
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(name: &str) -> StorageConfig {
        StorageConfig {
            name: name.into(),
            endpoint: "http://127.0.0.1:9000".into(),
            region: default_region(),
            bucket: "b".into(),
            prefix: String::new(),
            path_style: true,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            delete_after_upload: false,
            part_size_mib: DEFAULT_PART_SIZE_MIB,
        }
    }

    #[test]
    fn bad_storages_name_the_key() {
        assert!(validate(&[storage("a"), storage("b")]).is_ok());
        let cases: Vec<(Vec<StorageConfig>, &str)> = vec![
            (vec![storage("a"), storage("a")], "recording.storage.name"),
            (vec![storage("a b")], "recording.storage.name"),
            (
                vec![StorageConfig {
                    bucket: String::new(),
                    ..storage("a")
                }],
                "recording.storage.bucket",
            ),
            (
                vec![StorageConfig {
                    endpoint: "s3.example.com".into(),
                    ..storage("a")
                }],
                "recording.storage.endpoint",
            ),
            (
                vec![StorageConfig {
                    access_key_id: "AK".into(),
                    ..storage("a")
                }],
                "recording.storage.access_key_id",
            ),
            (
                vec![StorageConfig {
                    part_size_mib: 1,
                    ..storage("a")
                }],
                "recording.storage.part_size_mib",
            ),
        ];
        for (storages, key) in cases {
            assert_eq!(validate(&storages).unwrap_err().0, key);
        }
    }
}
