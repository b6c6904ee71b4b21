//! Redis, where every job lives: where it is (`config`), how to reach it through outages and
//! failovers (`connection`, `outage`), what its errors mean (`errors`), how its keys are named
//! in each layout (`keys`), and the Lua scripts that move jobs atomically (`scripts/`).

pub(crate) mod config;
pub(crate) mod connection;
pub(crate) mod errors;
pub(crate) mod keys;
pub(crate) mod outage;
pub(crate) mod scripts;
