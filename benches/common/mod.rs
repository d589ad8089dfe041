//! What the root benches share: a two-thread runtime (the VM's cores) and the embedded mock
//! on it, without rate limits and keeping no state: the benches measure the pipeline and the
//! generator, not the mock's bookkeeping (its cost is measured on its own, docs/benchmarks.md,
//! "With state kept").

use cio_mock::{MockHandle, MockServer};
use tokio::runtime::Runtime;

/// The runtime the bench runs on, and a mock served from it.
pub fn runtime_and_mock() -> (Runtime, MockHandle) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mock = rt
        .block_on(MockServer::builder().unlimited().keep_state(false).start())
        .expect("the embedded mock");
    (rt, mock)
}
