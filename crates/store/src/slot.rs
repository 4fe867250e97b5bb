//! The open database, shared by readers and the writer, and the store's
//! health (SPEC §13.10). redb refuses all work after an I/O error until the
//! file is closed and opened again, so after a failed commit the writer takes
//! the database out of the slot, waits for readers to let go, and reopens it
//! with backoff; meanwhile every read and write answers `Unavailable`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use redb::Database;

use crate::error::StoreError;

/// Memory redb may use for caching pages (redb's default is 1 GiB). The audit
/// log is append-mostly and read rarely: listings walk index blocks and a few
/// rows, so 8 MiB keeps a filtered page at a million requests fast while the
/// proxy's memory after a load stays close to idle (SPEC §14; with 32 MiB the
/// cache alone was most of the growth after a load run).
const STORE_CACHE_BYTES: usize = 8 * 1024 * 1024;

pub(crate) struct DbSlot {
    db: RwLock<Option<Arc<Database>>>,
    fault: Mutex<Option<String>>,
    path: PathBuf,
}

impl DbSlot {
    pub(crate) fn new(db: Database, path: &Path) -> Self {
        DbSlot {
            db: RwLock::new(Some(Arc::new(db))),
            fault: Mutex::new(None),
            path: path.to_path_buf(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The database, or `Unavailable` while it is being reopened.
    pub(crate) fn get(&self) -> Result<Arc<Database>, StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match db.as_ref() {
            Some(db) => Ok(db.clone()),
            None => Err(StoreError::Unavailable(
                self.fault()
                    .unwrap_or_else(|| "the store is being reopened".into()),
            )),
        }
    }

    /// Why the store cannot commit right now (None when healthy).
    pub(crate) fn fault(&self) -> Option<String> {
        self.fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Marks the store faulted and takes the database out of the slot.
    pub(crate) fn take(&self, why: &str) -> Option<Arc<Database>> {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = Some(why.to_string());
        self.db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Puts a reopened database back; the store is healthy again.
    pub(crate) fn put(&self, db: Arc<Database>) {
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(db);
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Opens (creating if needed) the redb file.
pub(crate) fn open_db(path: &Path) -> Result<Database, StoreError> {
    Database::builder()
        .set_cache_size(STORE_CACHE_BYTES)
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen
            | redb::DatabaseError::LockProtocolMismatch => StoreError::Locked {
                path: path.to_path_buf(),
            },
            redb::DatabaseError::Storage(redb::StorageError::Io(source)) => StoreError::Io {
                path: path.to_path_buf(),
                source,
            },
            other => StoreError::storage(format!("opening {}: {other}", path.display())),
        })
}
