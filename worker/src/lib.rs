//! The smeshfleet worker: one per rig. It discovers the rig's GPUs, CPU and disks, enrolls with
//! the coordinator, and runs the jobs it leases. It never links the coordinator, and never holds
//! a private key: the coordinator sends node ids and commitment ATX ids only.

pub mod agent;
pub mod client;
pub mod discovery;
pub mod exec;
pub mod stream;
