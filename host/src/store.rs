//! The one durable store: a single file on disk (`store.path`) holding what must survive a
//! crash — the webhook outbox today, the recording upload queue next. One crate (redb: pure
//! Rust, ACID, copy-on-write B-trees with checksummed commits, so a `kill -9` at any moment
//! leaves the last committed transaction intact) behind this one small module, so its users
//! never name the crate.
//!
//! The model is deliberately plain: named tables ([`Table`]) of byte keys to byte values,
//! ordered by key; a write is one transaction ([`Store::write`]), committed durably (fsync)
//! before it returns; reads see the last commit and never wait for a writer. Callers batch
//! their writes (the outbox commits everything its writer has in one transaction).
//!
//! Only one process may open the file at a time; a second one fails at start naming the path.

use redb::ReadableTable;
use std::ops::Bound;
use std::path::{Path, PathBuf};

/// A named table of byte keys to byte values, ordered by key. Names are namespaced by their
/// owner: `outbox.queue`, `uploads.pending`.
#[derive(Debug, Clone, Copy)]
pub struct Table(&'static str);

impl Table {
    pub const fn new(name: &'static str) -> Self {
        Table(name)
    }

    fn def(self) -> redb::TableDefinition<'static, &'static [u8], &'static [u8]> {
        redb::TableDefinition::new(self.0)
    }
}

/// What went wrong with the store; the message names the file where the store knows it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(String);

impl StoreError {
    /// An error found by a user of the store (e.g. a record it cannot read).
    pub fn new(message: impl Into<String>) -> Self {
        StoreError(message.into())
    }
}

/// The store's file, open.
pub struct Store {
    db: redb::Database,
    path: PathBuf,
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

impl Store {
    /// Open the file at `path`, creating it (and its directory) if needed.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let fail = |reason: String| StoreError(format!("store {}: {reason}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = redb::Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                fail("already open in another process (one server per store file)".into())
            }
            e => fail(e.to_string()),
        })?;
        Ok(Store {
            db,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError(format!("store {}: {e}", self.path.display()))
    }

    /// Run `f` in one write transaction and commit it durably. If `f` fails nothing is written.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&mut Write<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let mut write = Write {
            txn: &txn,
            store: self,
        };
        let result = f(&mut write)?;
        txn.commit().map_err(|e| self.error(e))?;
        Ok(result)
    }

    /// Read the last committed state.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&Read<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        use redb::ReadableDatabase;
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        f(&Read {
            txn: &txn,
            store: self,
        })
    }
}

/// Inside [`Store::write`].
pub struct Write<'a> {
    txn: &'a redb::WriteTransaction,
    store: &'a Store,
}

impl Write<'_> {
    pub fn insert(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut t = self
            .txn
            .open_table(table.def())
            .map_err(|e| self.store.error(e))?;
        t.insert(key, value).map_err(|e| self.store.error(e))?;
        Ok(())
    }

    /// Remove `key`; its value if it was there.
    pub fn remove(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut t = self
            .txn
            .open_table(table.def())
            .map_err(|e| self.store.error(e))?;
        let old = t.remove(key).map_err(|e| self.store.error(e))?;
        Ok(old.map(|v| v.value().to_vec()))
    }

    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self
            .txn
            .open_table(table.def())
            .map_err(|e| self.store.error(e))?;
        let v = t.get(key).map_err(|e| self.store.error(e))?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    /// Entries whose key starts with `prefix`, in key order, at most `limit`.
    pub fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let t = self
            .txn
            .open_table(table.def())
            .map_err(|e| self.store.error(e))?;
        scan(&t, prefix, Bound::Unbounded, limit).map_err(|e| self.store.error(e))
    }
}

/// Inside [`Store::read`].
pub struct Read<'a> {
    txn: &'a redb::ReadTransaction,
    store: &'a Store,
}

impl Read<'_> {
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.txn.open_table(table.def()) {
            Ok(t) => {
                let v = t.get(key).map_err(|e| self.store.error(e))?;
                Ok(v.map(|v| v.value().to_vec()))
            }
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(self.store.error(e)),
        }
    }

    /// Entries whose key starts with `prefix` and is greater than `after` (if given), in key
    /// order, at most `limit`.
    pub fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        match self.txn.open_table(table.def()) {
            Ok(t) => {
                let after = after.map_or(Bound::Unbounded, Bound::Excluded);
                scan(&t, prefix, after, limit).map_err(|e| self.store.error(e))
            }
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
            Err(e) => Err(self.store.error(e)),
        }
    }
}

fn scan<T: redb::ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    prefix: &[u8],
    after: Bound<&[u8]>,
    limit: usize,
) -> Result<Vec<Entry>, redb::StorageError> {
    let start = match after {
        Bound::Excluded(k) if k >= prefix => Bound::Excluded(k),
        _ => Bound::Included(prefix),
    };
    let mut out = Vec::new();
    for item in table.range::<&[u8]>((start, Bound::Unbounded))? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = item?;
        if !k.value().starts_with(prefix) {
            break;
        }
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Table = Table::new("test.t");

    #[test]
    fn writes_survive_reopening_and_scans_stay_in_their_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/store.redb");
        {
            let store = Store::open(&path).unwrap();
            assert!(store.read(|r| r.get(T, b"a")).unwrap().is_none());
            store
                .write(|w| {
                    for k in [&b"a\x001"[..], b"a\x002", b"a\x003", b"b\x001"] {
                        w.insert(T, k, k)?;
                    }
                    Ok(())
                })
                .unwrap();
            assert_eq!(
                store.write(|w| w.remove(T, b"a\x002")).unwrap(),
                Some(b"a\x002".to_vec())
            );
            // A failing transaction writes nothing.
            let _ = store.write(|w| {
                w.insert(T, b"a\x009", b"x")?;
                Err::<(), _>(StoreError::new("no"))
            });
        }
        let store = Store::open(&path).unwrap();
        let keys = |after: Option<&[u8]>| {
            store
                .read(|r| r.scan(T, b"a\x00", after, 10))
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(None), vec![b"a\x001".to_vec(), b"a\x003".to_vec()]);
        assert_eq!(keys(Some(b"a\x001")), vec![b"a\x003".to_vec()]);
        assert_eq!(store.write(|w| w.scan(T, b"b", 10)).unwrap().len(), 1);
    }

    #[test]
    fn a_second_opener_is_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let _first = Store::open(&path).unwrap();
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(
            err.contains("s.redb") && err.contains("already open"),
            "{err}"
        );
    }
}
