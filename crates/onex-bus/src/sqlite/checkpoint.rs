//! Checkpoints off the write path.
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the WAL past its
//! threshold: that commit copies ~1,000 pages into the database file and syncs twice while
//! every publisher waiting on it stalls (measured with 16 concurrent publishers: 1.7 % of
//! the commits took 60 % of all commit time). The writer connection replaces it with a WAL
//! hook that only notes the WAL's size; past [`WAL_PAGES_CHECKPOINT`] the writer nudges a
//! thread that checkpoints on its own connection (`PASSIVE`: it never blocks the writer or
//! readers), syncing as the configured `sync` asks. Past the threshold the thread is nudged
//! once per [`NUDGE_EVERY_PAGES`] new pages, so under load it checkpoints nearly back to back:
//! that keeps the WAL copied, so SQLite can rewind it often and the writer's page lookups stay
//! cheap (nudging once per 1,000 new pages instead made 16 concurrent publishers up to 2x
//! slower; see decisions.md, "Twelfth session"), without copying the same pages again after
//! every small transaction.
//!
//! A checkpoint running beside a busy writer rarely finds the WAL fully copied at the moment
//! a transaction starts, which is when SQLite rewinds it; so past [`WAL_PAGES_LIMIT`] the
//! writer runs one `RESTART` checkpoint itself between transactions: it copies the little
//! the thread has not and waits for readers, and the WAL starts over. The WAL stays bounded
//! under a steady write load, and publishers wait for one checkpoint per ~80 MB instead of
//! one per ~4 MB.

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use onex_core::{Error, Result};
use parking_lot::Mutex;
use rusqlite::hooks::Wal;
use rusqlite::Connection;

use super::codec::SqlContext;

/// WAL size (pages) at which the checkpoint thread is nudged (SQLite's own default threshold).
const WAL_PAGES_CHECKPOINT: c_int = 1000;
/// New WAL pages between two nudges of the checkpoint thread (past [`WAL_PAGES_CHECKPOINT`]).
/// Nudging after every commit made the thread copy the same few pages (the last leaf of each
/// partition and their parents) again after each small transaction: with 16 concurrent
/// publishers it used ~45 % of a core. Every 64 pages (~4 such transactions) it uses about a
/// third less, and 16 concurrent publishers ran ~25 % faster (decisions.md, "Fourteenth
/// session").
const NUDGE_EVERY_PAGES: c_int = 64;
/// WAL size (pages, ~80 MB with 4 KiB pages) at which the checkpoint rewinds the WAL.
const WAL_PAGES_LIMIT: c_int = 20 * WAL_PAGES_CHECKPOINT;

thread_local! {
    /// Pages in the WAL after the last commit on this thread's writer connection.
    static WAL_PAGES: Cell<c_int> = const { Cell::new(0) };
}

fn note_wal_size(_wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages));
    Ok(())
}

/// Turns the automatic checkpoint of the writer connection `conn` off (the hook replaces it).
/// The connection must only be used on the thread that later calls [`wal_pages`].
pub(crate) fn install_hook(conn: &Connection) {
    conn.wal_hook(Some(note_wal_size));
}

/// Pages in the WAL after the last commit made on this thread.
fn wal_pages() -> c_int {
    WAL_PAGES.with(Cell::get)
}

/// The checkpoint thread, and the writer's side of the policy. Dropping it lets the thread
/// finish its checkpoint and exit.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    nudge: Option<mpsc::SyncSender<()>>,
    /// WAL size at the writer's last rewind attempt past the limit (0 below it).
    rewound_at: c_int,
    /// WAL size when the thread was last nudged.
    nudged_at: c_int,
    /// Held by whoever checkpoints: SQLite runs one checkpoint at a time and refuses a second
    /// at once, so the writer's rewind waits for the thread's pass instead of failing.
    running: Arc<Mutex<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a connection on `path` with `synchronous = sync` (a checkpoint syncs as its
    /// connection says) and starts the thread.
    pub(crate) fn start(path: &Path, sync: &'static str, name: &str) -> Result<Checkpointer> {
        let conn = super::schema::open_reader(path)?;
        conn.pragma_update(None, "synchronous", sync).sql("setting synchronous for checkpoints")?;
        let (nudge, rx) = mpsc::sync_channel::<()>(1);
        let running = Arc::new(Mutex::new(()));
        let lock = running.clone();
        let thread = std::thread::Builder::new()
            .name(format!("onex-sqlite-checkpoint:{name}"))
            .spawn(move || {
                while rx.recv().is_ok() {
                    let _running = lock.lock();
                    if let Err(e) = checkpoint(&conn, "PASSIVE") {
                        tracing::debug!(error = %e.report(), "background WAL checkpoint failed; the next nudge retries");
                    }
                }
            })
            .map_err(|e| Error::initialization("cannot start the sqlite checkpoint thread").with_source(e))?;
        Ok(Checkpointer { nudge: Some(nudge), rewound_at: 0, nudged_at: 0, running, thread: Some(thread) })
    }

    /// Called by the writer after each commit on `writer`: nudges the thread past
    /// [`WAL_PAGES_CHECKPOINT`] (returning at once), and past [`WAL_PAGES_LIMIT`] rewinds the
    /// WAL on `writer` itself — again only after another [`WAL_PAGES_CHECKPOINT`] pages when
    /// readers kept the WAL in use.
    pub(crate) fn committed(&mut self, writer: &Connection) {
        let pages = wal_pages();
        if pages < WAL_PAGES_LIMIT {
            self.rewound_at = 0;
            // A nudge already pending covers this commit's pages; the next commit tries again.
            if nudge_due(pages, self.nudged_at) && self.nudge.as_ref().is_some_and(|n| n.try_send(()).is_ok()) {
                self.nudged_at = pages;
            }
        } else if pages >= self.rewound_at + WAL_PAGES_CHECKPOINT {
            self.rewound_at = pages;
            let _running = self.running.lock();
            if let Err(e) = checkpoint(writer, "RESTART") {
                tracing::debug!(error = %e.report(), pages, "rewinding the WAL failed; retried later");
            }
        }
    }
}

/// Whether a commit that left `pages` in the WAL should nudge the checkpoint thread, which was
/// last nudged at `nudged_at` pages: past [`WAL_PAGES_CHECKPOINT`], once per
/// [`NUDGE_EVERY_PAGES`] new pages, and at once when the WAL started over since
/// (`pages < nudged_at`).
fn nudge_due(pages: c_int, nudged_at: c_int) -> bool {
    pages >= WAL_PAGES_CHECKPOINT && (pages < nudged_at || pages >= nudged_at + NUDGE_EVERY_PAGES)
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One checkpoint: `PASSIVE` copies what it can without waiting for anyone; `RESTART` also
/// waits (the busy timeout) for the writer and readers so that the WAL starts over.
pub(crate) fn checkpoint(conn: &Connection, mode: &str) -> Result<()> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())).sql("checkpointing the WAL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_is_nudged_once_per_batch_of_new_pages_past_the_threshold() {
        assert!(!nudge_due(WAL_PAGES_CHECKPOINT - 1, 0), "below the threshold");
        assert!(nudge_due(WAL_PAGES_CHECKPOINT, 0), "first commit past it");
        let at = WAL_PAGES_CHECKPOINT + 10;
        assert!(!nudge_due(at + 1, at), "a commit right after a nudge waits");
        assert!(!nudge_due(at + NUDGE_EVERY_PAGES - 1, at));
        assert!(nudge_due(at + NUDGE_EVERY_PAGES, at), "64 new pages later");
        assert!(nudge_due(WAL_PAGES_CHECKPOINT + 5, at + 500), "the WAL started over and grew past the threshold again");
    }
}
