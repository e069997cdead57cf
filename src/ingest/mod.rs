//! Sources of event records. Both end in the same Redis stream, read by [`redis_stream::read`].
//!
//! - [`redis_stream`]: the consumer group reader, acknowledger and dead-letter writer.
//! - [`http`]: `POST /v1/events`, which appends validated records to the stream.

pub mod http;
pub mod redis_stream;
