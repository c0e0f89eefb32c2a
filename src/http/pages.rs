//! The pages the hub serves itself: the demo client at `/`, each person's settings at
//! `/settings/`, the administration page at `/manage/` and the operator page at `/admin/`.
//!
//! Their HTML, CSS and JavaScript live in `web/` and are compiled into the binary, so the hub
//! stays one file with nothing to deploy beside it. The pages are plain HTML with ES modules:
//! no build step, no third-party code, nothing fetched from elsewhere. A strict content
//! security policy allows only the hub's own scripts, styles and connections.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

/// One file of `web/`, at the path it is served from.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Everything the pages load. `connect-src 'self'` covers the hub's own WebSocket.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                      connect-src 'self'; object-src 'none'; base-uri 'none'; \
                      form-action 'self'; frame-ancestors 'none'";

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: HTML,
        body: include_str!("../../web/index.html"),
    },
    Asset {
        path: "/admin/",
        content_type: HTML,
        body: include_str!("../../web/admin.html"),
    },
    Asset {
        path: "/settings/",
        content_type: HTML,
        body: include_str!("../../web/settings.html"),
    },
    Asset {
        path: "/manage/",
        content_type: HTML,
        body: include_str!("../../web/manage.html"),
    },
    Asset {
        path: "/assets/app.css",
        content_type: CSS,
        body: include_str!("../../web/app.css"),
    },
    Asset {
        path: "/assets/common.js",
        content_type: JS,
        body: include_str!("../../web/common.js"),
    },
    Asset {
        path: "/assets/demo.js",
        content_type: JS,
        body: include_str!("../../web/demo.js"),
    },
    Asset {
        path: "/assets/rooms.js",
        content_type: JS,
        body: include_str!("../../web/rooms.js"),
    },
    Asset {
        path: "/assets/attachments.js",
        content_type: JS,
        body: include_str!("../../web/attachments.js"),
    },
    Asset {
        path: "/assets/tickethub-client.js",
        content_type: JS,
        body: include_str!("../../clients/js/src/index.js"),
    },
    Asset {
        path: "/assets/settings.js",
        content_type: JS,
        body: include_str!("../../web/settings.js"),
    },
    Asset {
        path: "/assets/settings-parts.js",
        content_type: JS,
        body: include_str!("../../web/settings-parts.js"),
    },
    Asset {
        path: "/assets/join.js",
        content_type: JS,
        body: include_str!("../../web/join.js"),
    },
    Asset {
        path: "/assets/manage.js",
        content_type: JS,
        body: include_str!("../../web/manage.js"),
    },
    Asset {
        path: "/assets/manage-parts.js",
        content_type: JS,
        body: include_str!("../../web/manage-parts.js"),
    },
    Asset {
        path: "/assets/manage-people.js",
        content_type: JS,
        body: include_str!("../../web/manage-people.js"),
    },
    Asset {
        path: "/assets/manage-access.js",
        content_type: JS,
        body: include_str!("../../web/manage-access.js"),
    },
    Asset {
        path: "/assets/manage-projects.js",
        content_type: JS,
        body: include_str!("../../web/manage-projects.js"),
    },
    Asset {
        path: "/assets/manage-oncall.js",
        content_type: JS,
        body: include_str!("../../web/manage-oncall.js"),
    },
    Asset {
        path: "/assets/manage-keys.js",
        content_type: JS,
        body: include_str!("../../web/manage-keys.js"),
    },
    Asset {
        path: "/assets/admin.js",
        content_type: JS,
        body: include_str!("../../web/admin.js"),
    },
    // The service worker shows Web Push messages. Its scope is its own directory, so it is
    // served from the root to cover `/`; `script-src 'self'` (the workers' fallback) allows it.
    Asset {
        path: "/sw.js",
        content_type: JS,
        body: include_str!("../../web/sw.js"),
    },
    Asset {
        path: "/assets/icon.svg",
        content_type: SVG,
        body: include_str!("../../web/icon.svg"),
    },
    // Browsers ask for `/favicon.ico` of any page that names no icon (the API's JSON, say).
    Asset {
        path: "/favicon.ico",
        content_type: SVG,
        body: include_str!("../../web/icon.svg"),
    },
];

/// The routes of this module.
pub fn router() -> Router<AppState> {
    let mut router = Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route(
            "/settings",
            get(|| async { Redirect::permanent("/settings/") }),
        )
        .route("/manage", get(|| async { Redirect::permanent("/manage/") }));
    for asset in ASSETS {
        router = router.route(asset.path, get(move || async move { serve(asset) }));
    }
    router
}

fn serve(asset: &'static Asset) -> Response {
    (
        [
            (CONTENT_TYPE, asset.content_type),
            // The files change with the binary; revalidating keeps an upgraded hub consistent.
            (CACHE_CONTROL, "no-cache"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (REFERRER_POLICY, "no-referrer"),
            (CONTENT_SECURITY_POLICY, POLICY),
        ],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `/assets/…` path a page or script names, in quotes.
    fn referenced(text: &str) -> Vec<&str> {
        text.split(['"', '\''])
            .filter(|s| s.starts_with("/assets/") && !s.contains(char::is_whitespace))
            .collect()
    }

    #[test]
    fn every_referenced_asset_is_served() {
        let served: Vec<_> = ASSETS.iter().map(|a| a.path).collect();
        for asset in ASSETS {
            for path in referenced(asset.body) {
                assert!(
                    served.contains(&path),
                    "{} names {path}, which is not served",
                    asset.path
                );
            }
        }
        assert!(referenced(ASSETS[0].body).contains(&"/assets/demo.js"));
        assert!(referenced(ASSETS[1].body).contains(&"/assets/admin.js"));
        let settings = ASSETS.iter().find(|a| a.path == "/settings/").unwrap();
        assert!(referenced(settings.body).contains(&"/assets/settings.js"));
        let manage = ASSETS.iter().find(|a| a.path == "/manage/").unwrap();
        assert!(referenced(manage.body).contains(&"/assets/manage.js"));
        let workspace = ASSETS.iter().find(|a| a.path == "/assets/demo.js").unwrap();
        assert!(referenced(workspace.body).contains(&"/assets/join.js"));
    }

    #[test]
    fn scripts_insert_no_html() {
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
            ] {
                assert!(
                    !asset.body.contains(sink),
                    "{} uses {sink}; build nodes with textContent instead",
                    asset.path
                );
            }
        }
    }
}
