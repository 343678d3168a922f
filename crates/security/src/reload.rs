//! Settings built from files that an operator replaces while the node runs (certificates,
//! keys, the roles file): re-read on SIGHUP, and when a file's size or modification time
//! changes. A file that no longer loads is reported and the previous settings stay in force:
//! a half-written certificate never takes a port down.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// Size and modification time of each file (None: unreadable).
type Stamps = Vec<Option<(SystemTime, u64)>>;

/// A value built from files, rebuilt when they change.
pub struct Reloadable<T> {
    what: String,
    paths: Vec<PathBuf>,
    #[allow(clippy::type_complexity)]
    build: Box<dyn Fn() -> Result<T, String> + Send + Sync>,
    current: RwLock<Arc<T>>,
    stamps: Mutex<Stamps>,
}

impl<T> std::fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloadable")
            .field("what", &self.what)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Reloadable<T> {
    /// Builds the value now (an error here fails the start) from `paths`, with `build`;
    /// `what` names it in log lines ("client port TLS").
    pub fn new(
        what: impl Into<String>,
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, String> {
        let stamps = stamps(&paths);
        let value = build()?;
        Ok(Arc::new(Reloadable {
            what: what.into(),
            paths,
            build: Box::new(build),
            current: RwLock::new(Arc::new(value)),
            stamps: Mutex::new(stamps),
        }))
    }

    /// The value in force.
    pub fn get(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Rebuilds the value if a file changed since the last load, or always with `force`.
    /// `Ok(true)`: a new value is in force; an error leaves the old one in force.
    pub fn reload(&self, force: bool) -> Result<bool, String> {
        let now = stamps(&self.paths);
        {
            let mut last = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
            if !force && *last == now {
                return Ok(false);
            }
            // (Recorded even when the build fails: the same broken files are reported once,
            // not at every poll.)
            *last = now;
        }
        let value = (self.build)()?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
        Ok(true)
    }

    /// What this value is, for log lines.
    pub fn what(&self) -> &str {
        &self.what
    }
}

fn stamps(paths: &[PathBuf]) -> Stamps {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// Anything [`spawn_reloader`] can reload.
pub trait Reload: Send + Sync {
    /// See [`Reloadable::reload`].
    fn reload(&self, force: bool) -> Result<bool, String>;
    /// See [`Reloadable::what`].
    fn what(&self) -> &str;
}

impl<T: Send + Sync + 'static> Reload for Reloadable<T> {
    fn reload(&self, force: bool) -> Result<bool, String> {
        Reloadable::reload(self, force)
    }
    fn what(&self) -> &str {
        Reloadable::what(self)
    }
}

/// Reloads `items` on SIGHUP (all of them) and every `poll` (those whose files changed),
/// until `stop` completes; each reload, and each failure, is logged.
pub fn spawn_reloader(
    items: Vec<Arc<dyn Reload>>,
    poll: Duration,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if items.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; files are polled only");
                None
            }
        };
        let mut stop = std::pin::pin!(stop);
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let force = tokio::select! {
                () = &mut stop => return,
                _ = ticker.tick() => false,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            for item in &items {
                match item.reload(force) {
                    Ok(true) => tracing::info!(what = item.what(), "reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(
                        what = item.what(),
                        error = %e,
                        "reload failed; the previous settings stay in force"
                    ),
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_old_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "1").unwrap();
        let p = path.clone();
        let value = Reloadable::new("number", vec![path.clone()], move || {
            std::fs::read_to_string(&p)
                .map_err(|e| e.to_string())?
                .trim()
                .parse::<u32>()
                .map_err(|e| e.to_string())
        })
        .unwrap();
        assert_eq!(*value.get(), 1);
        assert_eq!(value.reload(false), Ok(false), "nothing changed");
        std::fs::write(&path, "22").unwrap();
        assert_eq!(value.reload(false), Ok(true));
        assert_eq!(*value.get(), 22);
        std::fs::write(&path, "x").unwrap();
        assert!(value.reload(false).is_err());
        assert_eq!(*value.get(), 22, "a broken file keeps the old value");
        assert_eq!(value.reload(false), Ok(false), "reported once");
        assert!(value.reload(true).is_err(), "forced: tried again");
    }
}
