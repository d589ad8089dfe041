//! End-to-end tests: pipelines against the embedded mock over real sockets, and a child process
//! killed with SIGKILL or stopped with SIGTERM. One test binary, so it is linked once.

mod support;

mod crash;
mod faults;
mod malformed;
mod replay;
mod sigterm;
