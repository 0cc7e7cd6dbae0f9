//! The parts of the guest agent that parse what a caller sends and need no
//! guest around them: patch planning and workspace path rules. The agent
//! binary uses them from here, and so do the fuzz targets
//! (`crates/pyro-fuzz`), so what is fuzzed is the code that runs.

pub mod patch;
pub mod paths;
