//! Packaging, systemd units, IAM policies, CloudFormation, packer and user data, checked
//! with the real tools, a module per tool. The user-data scripts run end to end against
//! moto. A missing tool is a failure, never a skip: `bash scripts/test.sh` installs them
//! all. Fixtures: `shipshape_tests::{tools, packaging}`.

mod cloud_init;
mod cloudformation;
mod iam;
mod live_systemd;
mod packages;
mod packer;
mod shellcheck;
mod systemd;
mod userdata;
