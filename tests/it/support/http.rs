//! A scripted HTTP server: records every request (path, headers, JSON body) and answers each path
//! from its script (status, body, delay), then with the path's default answer. Unknown paths get
//! 500, so a test notices any call it did not expect.

use super::free_port;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub delay: Duration,
    pub retry_after: Option<u64>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply { status, body, delay: Duration::ZERO, retry_after: None }
    }
}

#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub status: u16,
}

type Handler = Arc<dyn Fn(&str, &Value) -> Option<Reply> + Send + Sync>;

#[derive(Default)]
struct St {
    scripts: HashMap<String, VecDeque<Reply>>,
    log: Vec<Request>,
}

pub struct Server {
    st: Arc<Mutex<St>>,
    pub port: u16,
    _rt: tokio::runtime::Runtime,
}

async fn handle(State((st, fallback)): State<(Arc<Mutex<St>>, Handler)>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let scripted = st.lock().unwrap().scripts.get_mut(&path).and_then(|q| q.pop_front());
    let reply = scripted.or_else(|| fallback(&path, &json)).unwrap_or(Reply::json(500, Value::String(format!("unexpected {path}"))));
    st.lock().unwrap().log.push(Request {
        path,
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect(),
        body: json,
        status: reply.status,
    });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut r = (StatusCode::from_u16(reply.status).unwrap(), axum::Json(reply.body)).into_response();
    if let Some(s) = reply.retry_after {
        r.headers_mut().insert("retry-after", s.to_string().parse().unwrap());
    }
    r
}

impl Server {
    /// `fallback(path, body)` answers what the script does not.
    pub fn start(fallback: impl Fn(&str, &Value) -> Option<Reply> + Send + Sync + 'static) -> Server {
        let st: Arc<Mutex<St>> = Default::default();
        let port = free_port();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let state = (st.clone(), Arc::new(fallback) as Handler);
        rt.spawn(async move {
            let app = axum::Router::new().fallback(handle).with_state(state);
            let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
            axum::serve(l, app).await.unwrap();
        });
        assert!(super::wait_until(Duration::from_secs(5), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()));
        Server { st, port, _rt: rt }
    }

    pub fn script(&self, path: &str, replies: Vec<Reply>) {
        self.st.lock().unwrap().scripts.entry(path.to_string()).or_default().extend(replies);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.st.lock().unwrap().log.clone()
    }
}
