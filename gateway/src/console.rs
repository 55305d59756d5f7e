//! The operator console at `/console`: a page and its static files (HTML, CSS, JavaScript
//! modules, the vendored uPlot chart library), built into the binary from `gateway/console/`.
//!
//! The files are public; everything they show comes from the admin routes, which need the
//! admin token (the page asks for it and keeps it in the tab's `sessionStorage`). Every answer
//! carries a Content-Security-Policy that allows only this origin (no inline script or style,
//! no framing), `nosniff`, no referrer, and `Cache-Control: no-cache` (the files change with
//! the binary, so the browser revalidates them).

use warp::filters::path::Tail;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::problem::ApiError;
use crate::routes::paths;
use crate::telemetry::tag;

/// The Content-Security-Policy of the console's files: this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One built-in file: its path under `/console/`, media type and content.
struct Asset {
    path: &'static str,
    media_type: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

macro_rules! asset {
    ($path:literal, $media_type:expr) => {
        Asset {
            path: $path,
            media_type: $media_type,
            body: include_bytes!(concat!("../console/", $path)),
        }
    };
}

/// Every file of the console; `index.html` is also the answer to `/console` itself.
const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("console.css", CSS),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("flow.js", JS),
    asset!("consumers.js", JS),
    asset!("projections.js", JS),
    asset!("orders.js", JS),
    asset!("analytics.js", JS),
    asset!("vendor/uplot/uPlot.iife.min.js", JS),
    asset!("vendor/uplot/uPlot.min.css", CSS),
    asset!("vendor/uplot/LICENSE", TEXT),
    asset!("vendor/uplot/README.md", TEXT),
];

fn find(path: &str) -> Option<&'static Asset> {
    let path = if path.is_empty() { "index.html" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

/// `GET` (and `HEAD`) `/console` and `/console/<file>`; another method on a file is a 405,
/// and unknown files fall through to the gateway's 404.
pub fn routes() -> BoxedFilter<(Response,)> {
    warp::path("console")
        .and(warp::path::tail())
        .and(warp::method())
        .and_then(|tail: Tail, method: Method| async move {
            let asset = find(tail.as_str()).ok_or_else(warp::reject::not_found)?;
            Ok::<_, warp::Rejection>(if method == Method::GET || method == Method::HEAD {
                answer(asset)
            } else {
                ApiError::MethodNotAllowed {
                    allow: Some("GET, HEAD".into()),
                }
                .into_response()
            })
        })
        .map(tag(paths::CONSOLE))
        .boxed()
}

fn answer(asset: &'static Asset) -> Response {
    let mut response = warp::reply::with_status(asset.body, StatusCode::OK).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.media_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_modules_load_only_files_that_are_served() {
        for asset in ASSETS.iter().filter(|a| {
            a.path.ends_with(".html") || (a.path.ends_with(".js") && !a.path.starts_with("vendor/"))
        }) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for reference in text
                .split(['"', '\''])
                .filter(|s| s.ends_with(".js") || s.ends_with(".css"))
                .filter(|s| s.starts_with("./") || s.starts_with("/console/"))
            {
                let file = reference
                    .trim_start_matches("./")
                    .trim_start_matches("/console/");
                assert!(
                    find(file).is_some(),
                    "{} loads {reference}, which is not built in",
                    asset.path
                );
            }
        }
    }
}
