//! What every guest benchmark starts from: the installed debian:12 and a
//! private state directory beside the shared cache.

use pyro_core::Paths;

/// The installed debian:12, and paths whose state lives in a temporary
/// directory (kept alive by the returned handle) over the shared cache.
pub fn debian12() -> (pyro_env::Installed, Paths, tempfile::TempDir) {
    let cache = pyro_env::Cache::from_env();
    let spec = pyro_env::catalog::lookup("debian:12").unwrap();
    let env = pyro_env::install::installed(&cache, &pyro_env::EnvRef::Catalog(spec), None)
        .unwrap_or_else(|e| panic!("{e}\n(run `make bench`: it pulls debian:12 first)"));
    let state = tempfile::Builder::new()
        .prefix("pyro-bench-")
        .tempdir()
        .unwrap();
    let paths = Paths::new(state.path(), cache);
    (env, paths, state)
}
