//! Sources of event records besides the conserver's own `XADD`s: `POST /v1/events` appends
//! validated records to the same Redis stream, which `stream` reads.

pub mod http;
