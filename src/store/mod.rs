//! Redis, where every job lives: where it is and how to reach it through outages
//! (`connection`, `outage`), what its errors mean (`errors`), and how its keys are named in
//! each layout (`keys`).

pub(crate) mod config;
pub(crate) mod connection;
pub(crate) mod errors;
pub(crate) mod keys;
pub(crate) mod outage;
pub(crate) mod scripts;
