//! dohost's integration tests: one binary, one module per guarantee. Every
//! test runs the real `dohost serve` process or the real library against a
//! redb file in a temp dir, with guest components built from source in this
//! repository (examples/counter, examples/storage-patterns, examples/sql-patterns,
//! examples/batch-processor, examples/workspace, examples/js, examples/python,
//! tests/guests/{probe,advanced,stray},
//! the C object of examples/c, and the projects `dohost new` writes);
//! the world outside dohost is a real HTTP server on loopback (`outside`).

mod browser;
mod outside;
mod support;

mod admin;
mod alarms;
mod assets;
mod batch_processor;
mod c_guest;
mod chat;
mod cluster;
mod config_errors;
mod counter_e2e;
mod crash_recovery;
mod embedding;
mod export;
mod faults;
mod fullstack;
mod guest_faults;
mod history;
mod http_edge;
mod input_gate_ordering;
mod isolation;
mod js;
mod lifecycle;
mod memory_limits;
mod metrics;
mod migrations;
mod new_project;
mod observability;
mod outbound;
mod output_gate;
mod python;
mod reload;
mod rpc;
mod sql;
mod sql_patterns;
mod storage_cache;
mod storage_limits;
mod storage_list;
mod storage_model;
mod storage_patterns;
mod ui;
mod values;
mod websockets;
mod workspace;
mod wrangler;
