//! [`Resource`]: one path and the methods it answers. It builds the warp path filter from
//! the route template (see [`super::paths`]), runs the route of the request's method, answers
//! every other method with a 405 problem whose `Allow` header lists the resource's methods, and
//! labels every answer with the template for the request metrics.

use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use crate::problem::ApiError;
use crate::request_id::RequestId;
use crate::telemetry::tag;

/// A path and the routes of its methods. Build it with [`Resource::new`] (or
/// [`Resource::under`] inside a filter that has matched a prefix already), add a route per
/// method with [`Resource::on`] (a path without parameter) or [`Resource::on_param`] (a path
/// with one `{parameter}`), and finish with [`Resource::build`].
pub struct Resource {
    template: &'static str,
    prefix: &'static str,
    methods: Vec<Method>,
    routes: Option<BoxedFilter<(Response,)>>,
}

impl Resource {
    /// The resource at `template`, matched from the start of the path.
    pub fn new(template: &'static str) -> Self {
        Self::under("", template)
    }

    /// The resource at `template`, in a filter that has matched `prefix` (a prefix of
    /// `template`) already.
    ///
    /// # Panics
    /// When `template` does not start with `prefix` (a mistake in the route table).
    pub fn under(prefix: &'static str, template: &'static str) -> Self {
        assert!(
            template.starts_with(prefix),
            "route {template} is not under {prefix}"
        );
        Self {
            template,
            prefix,
            methods: Vec::new(),
            routes: None,
        }
    }

    /// The route of `method` on a path without parameter: `build` gets the filter that
    /// matches the path and the method and adds the handler.
    ///
    /// # Panics
    /// When the template has a parameter.
    #[must_use]
    pub fn on(
        self,
        method: Method,
        build: impl FnOnce(BoxedFilter<()>) -> BoxedFilter<(Response,)>,
    ) -> Self {
        let (before, param) = self.split();
        assert!(param.is_none(), "route {} has a parameter", self.template);
        let base = literals(&before)
            .and(warp::path::end())
            .and(method_filter(&method))
            .boxed();
        self.add(method, build(base))
    }

    /// The route of `method` on a path with one parameter: `build` gets the filter that
    /// matches the path and the method, extracting the parameter's raw (still
    /// percent-encoded) segment, and adds the handler.
    ///
    /// # Panics
    /// When the template has no parameter.
    #[must_use]
    pub fn on_param(
        self,
        method: Method,
        build: impl FnOnce(BoxedFilter<(String,)>) -> BoxedFilter<(Response,)>,
    ) -> Self {
        let (before, param) = self.split();
        let after = param.unwrap_or_else(|| panic!("route {} has no parameter", self.template));
        let base = literals(&before)
            .and(warp::path::param::<String>())
            .and(literals(&after))
            .and(warp::path::end())
            .and(method_filter(&method))
            .boxed();
        self.add(method, build(base))
    }

    /// Every route of the resource, then the 405 of the other methods, labelled with the
    /// template.
    ///
    /// # Panics
    /// When no route was added.
    pub fn build(self) -> BoxedFilter<(Response,)> {
        let mut allow: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
        allow.sort_unstable();
        let allow = allow.join(", ");
        let (before, param) = self.split();
        let any_path = match param {
            None => literals(&before).and(warp::path::end()).boxed(),
            Some(after) => literals(&before)
                .and(warp::path::param::<String>())
                .map(|_: String| ())
                .untuple_one()
                .and(literals(&after))
                .and(warp::path::end())
                .boxed(),
        };
        let routes = self
            .routes
            .unwrap_or_else(|| panic!("route {} has no method", self.template));
        routes
            .or(any_path.and(method_not_allowed(allow)))
            .unify()
            .map(tag(self.template))
            .boxed()
    }

    fn add(mut self, method: Method, route: BoxedFilter<(Response,)>) -> Self {
        self.methods.push(method);
        self.routes = Some(match self.routes.take() {
            None => route,
            Some(routes) => routes.or(route).unify().boxed(),
        });
        self
    }

    /// The literal segments before the parameter, and those after it (`None`: no
    /// parameter).
    fn split(&self) -> (Vec<&'static str>, Option<Vec<&'static str>>) {
        let rest = &self.template[self.prefix.len()..];
        let segments: Vec<&'static str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        match segments.iter().position(|s| s.starts_with('{')) {
            None => (segments, None),
            Some(i) => {
                assert!(
                    !segments[i + 1..].iter().any(|s| s.starts_with('{')),
                    "route {} has more than one parameter",
                    self.template
                );
                (segments[..i].to_vec(), Some(segments[i + 1..].to_vec()))
            }
        }
    }
}

/// Matches `segments` in order.
fn literals(segments: &[&'static str]) -> BoxedFilter<()> {
    segments
        .iter()
        .fold(warp::any().boxed(), |filter, segment| {
            filter.and(warp::path(*segment)).boxed()
        })
}

fn method_filter(method: &Method) -> BoxedFilter<()> {
    match *method {
        Method::GET => warp::get().boxed(),
        Method::POST => warp::post().boxed(),
        Method::PUT => warp::put().boxed(),
        Method::DELETE => warp::delete().boxed(),
        Method::PATCH => warp::patch().boxed(),
        ref other => panic!("no route takes {other}"),
    }
}

/// 405 with `Allow: <allow>` for any method not in `allow`. Methods in `allow` are left to
/// the routes (they reach here only when a route rejected for another reason, which then
/// wins).
fn method_not_allowed(allow: String) -> BoxedFilter<(Response,)> {
    warp::method()
        .and(crate::request_id::request_id())
        .and_then(move |method: Method, request_id: RequestId| {
            let allowed = allow.split(", ").any(|m| m == method.as_str());
            let allow = allow.clone();
            async move {
                if allowed {
                    Err(warp::reject::not_found())
                } else {
                    let error = ApiError::MethodNotAllowed { allow: Some(allow) };
                    Ok(crate::reply::finish::<Response>(&request_id, Err(error)))
                }
            }
        })
        .boxed()
}
