//! A small OTLP/HTTP receiver: accepts `POST /v1/traces` (protobuf), answers 200, and keeps
//! the spans it decoded and the bodies as they came.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One span as received.
#[derive(Debug, Clone)]
pub(crate) struct ReceivedSpan {
    pub(crate) service: String,
    pub(crate) name: String,
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    pub(crate) parent_span_id: u64,
    pub(crate) attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// A string attribute's value.
    pub(crate) fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Received {
    requests: AtomicUsize,
    spans: Mutex<Vec<ReceivedSpan>>,
    bodies: Mutex<Vec<Vec<u8>>>,
}

/// The receiver, listening on a free loopback port until dropped.
pub(crate) struct Receiver {
    port: u16,
    received: Arc<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Received::default());
        let shared = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = serve(socket, &shared).await;
                });
            }
        });
        Self {
            port,
            received,
            task,
        }
    }

    /// The base URL to give the exporter.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `POST /v1/traces` requests decoded so far.
    pub(crate) fn requests(&self) -> usize {
        self.received.requests.load(Ordering::SeqCst)
    }

    /// Every span received so far.
    pub(crate) fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().unwrap().clone()
    }

    /// True when a body received so far holds `text` anywhere: a span's or an event's
    /// attribute, a name, the resource (protobuf writes strings as their UTF-8 bytes).
    pub(crate) fn received_text(&self, text: &str) -> bool {
        let needle = text.as_bytes();
        self.received
            .bodies
            .lock()
            .unwrap()
            .iter()
            .any(|body| body.windows(needle.len()).any(|window| window == needle))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers the requests of one connection (keep-alive) until it closes.
async fn serve(socket: tokio::net::TcpStream, received: &Received) -> std::io::Result<()> {
    let mut reader = BufReader::new(socket);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).await?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        let status = if request_line.starts_with("POST /v1/traces ") {
            match ExportTraceServiceRequest::decode(body.as_slice()) {
                Ok(export) => {
                    keep(export, received);
                    received.bodies.lock().unwrap().push(body);
                    received.requests.fetch_add(1, Ordering::SeqCst);
                    "200 OK"
                }
                Err(_) => "400 Bad Request",
            }
        } else {
            "404 Not Found"
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
        );
        reader.get_mut().write_all(answer.as_bytes()).await?;
    }
}

fn keep(export: ExportTraceServiceRequest, received: &Received) {
    let mut spans = received.spans.lock().unwrap();
    for resource_spans in export.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| string_of(kv.value.as_ref()))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: u128::from_be_bytes(span.trace_id.try_into().unwrap_or([0; 16])),
                    span_id: u64::from_be_bytes(span.span_id.try_into().unwrap_or([0; 8])),
                    parent_span_id: u64::from_be_bytes(
                        span.parent_span_id.try_into().unwrap_or([0; 8]),
                    ),
                    attributes: span
                        .attributes
                        .iter()
                        .filter_map(|kv| Some((kv.key.clone(), string_of(kv.value.as_ref())?)))
                        .collect(),
                });
            }
        }
    }
}

fn string_of(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> Option<String> {
    match value?.value.as_ref()? {
        any_value::Value::StringValue(text) => Some(text.clone()),
        any_value::Value::IntValue(n) => Some(n.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}
