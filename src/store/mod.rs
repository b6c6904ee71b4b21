//! Redis, where every job lives: where it is and how to reach it through outages
//! (`connection`), and how its keys are named in each layout (`keys`).

pub(crate) mod connection;
pub(crate) mod keys;
