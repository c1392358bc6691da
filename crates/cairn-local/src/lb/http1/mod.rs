//! The balancer's own HTTP/1.1 codec: request and response heads parsed
//! with `httparse` into a stack array and rewritten into a reusable buffer
//! (`head`), and message bodies followed by their framing so that they can
//! be relayed as they come (`body`), from reusable read buffers (`buf`).
//! Nothing here allocates per message once a connection's buffers have
//! grown to the sizes its traffic needs: that, and one task per client
//! connection instead of hyper's server and client connections with their
//! channels, is what the proxy (`super::proxy`) is built on. See the
//! README's "Design decisions".
//!
//! Never: does I/O itself (the proxy reads and writes), or accepts a message
//! whose length two parties could read differently (request smuggling).

mod body;
mod buf;
mod head;

pub(super) use body::{Body, BodyError};
pub(super) use buf::ReadBuf;
pub(super) use head::{
    Framing, HeadError, MAX_HEAD, RequestHead, ResponsePlan, finish_request, parse_request,
    parse_response, request_minor, write_local,
};
