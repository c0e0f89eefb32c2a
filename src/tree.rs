//! Renders the supervision tree (`GET /api/admin/actors`) for a terminal.

use std::fmt::Write;

use serde_json::Value;

/// The tree as indented lines with counts, one actor per line.
pub fn render(root: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(root));
    let children = root["children"].as_array().cloned().unwrap_or_default();
    walk(&children, "", &mut out, None);
    out
}

fn walk(children: &[Value], prefix: &str, out: &mut String, more: Option<(u64, u64)>) {
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len() && more.is_none();
        let _ = writeln!(
            out,
            "{prefix}{}{}",
            if last { "└── " } else { "├── " },
            line(child)
        );
        let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
        let grand = child["children"].as_array().cloned().unwrap_or_default();
        let total = child["page"]["total"].as_u64().unwrap_or(0);
        let offset = child["page"]["offset"].as_u64().unwrap_or(0);
        let shown = grand.len() as u64;
        let rest = (total > offset + shown).then(|| (total - offset - shown, offset + shown));
        walk(&grand, &deeper, out, rest);
    }
    if let Some((left, next)) = more {
        let _ = writeln!(out, "{prefix}└── … {left} more (use --offset {next})");
    }
}

fn line(node: &Value) -> String {
    let name = node["name"].as_str().unwrap_or("?");
    let kind = node["kind"].as_str().unwrap_or("?");
    let status = node["status"].as_str().unwrap_or("?");
    let mut parts = vec![format!("{name} ({kind}, {status})")];
    match kind {
        "root" => {
            let t = &node["totals"];
            parts.push(format!(
                "node {}, up {}s; {} users, {} sockets, {} tickets, {} channels",
                node["node"].as_str().unwrap_or("?"),
                node["uptime_secs"],
                t["users"],
                t["sockets"],
                t["tickets"],
                t["channels"]
            ));
        }
        "escalation" => {
            parts.push(format!(
                "{} pending, next due {}; fired {}, cancelled {}, failed {}",
                node["pending"],
                node["next_due"].as_str().unwrap_or("-"),
                node["fired"],
                node["cancelled"],
                node["failed"]
            ));
        }
        "purge" => {
            let removed: u64 = node["removed"]
                .as_object()
                .map(|m| m.values().filter_map(Value::as_u64).sum())
                .unwrap_or(0);
            parts.push(format!(
                "{} sweeps, {removed} rows removed, last {}",
                node["sweeps"],
                node["last_finished"].as_str().unwrap_or("-")
            ));
        }
        "directory" => {
            parts.push(format!(
                "{} actors, {} failures",
                node["actors"], node["failures"]
            ));
            if let Some(f) = node["last_failure"].as_str() {
                parts.push(format!("last failure: {f}"));
            }
        }
        "user" => {
            if let Some(u) = node["username"].as_str().filter(|u| !u.is_empty()) {
                parts.push(u.to_owned());
            }
            let s = &node["sockets"];
            if !s.is_null() {
                parts.push(format!(
                    "{} sockets, {} queued, seen {}s ago",
                    s["count"], s["queued_frames"], s["last_seen_secs_ago"]
                ));
            }
        }
        "ticket" => {
            if let Some(k) = node["key"].as_str() {
                parts.push(format!(
                    "{k} {}",
                    node["ticket_status"].as_str().unwrap_or("")
                ));
            }
            parts.push(format!("idle {}s", node["idle_secs"]));
        }
        "channel" => parts.push(format!(
            "circuit {}, outbox {}, in flight {}, sent {}, failed {}, restarts {}",
            node["circuit"].as_str().unwrap_or("?"),
            node["outbox_depth"],
            node["in_flight"],
            node["sent"],
            node["failed"],
            node["restarts"]
        )),
        _ => {}
    }
    parts.join("  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_tree_with_counts_and_more_markers() {
        let doc = serde_json::json!({
            "name": "hub", "kind": "root", "status": "running", "uptime_secs": 5.0,
            "totals": {"users": 3, "sockets": 2, "tickets": 0, "channels": 1},
            "children": [
                {"name": "users", "kind": "directory", "status": "running", "actors": 3, "failures": 0,
                 "page": {"offset": 0, "limit": 1, "total": 3},
                 "children": [{"name": "user:1", "kind": "user", "status": "running", "username": "alice",
                               "sockets": {"count": 2, "queued_frames": 0, "last_seen_secs_ago": 0.5}}]},
                {"name": "delivery", "kind": "supervisor", "status": "running",
                 "children": [{"name": "channel:email", "kind": "channel", "status": "running", "circuit": "open",
                               "outbox_depth": 4, "in_flight": 0, "sent": 1, "failed": 0, "restarts": 1}]},
                {"name": "escalation", "kind": "escalation", "status": "running", "pending": 2,
                 "next_due": "2026-01-01T00:05:00.000Z", "fired": 1, "cancelled": 3, "failed": 0}
            ]
        });
        let text = render(&doc);
        assert!(text.starts_with("hub (root, running)"), "{text}");
        assert!(
            text.contains("├── users (directory, running)  3 actors, 0 failures"),
            "{text}"
        );
        assert!(
            text.contains("│   ├── user:1 (user, running)  alice  2 sockets"),
            "{text}"
        );
        assert!(text.contains("│   └── … 2 more (use --offset 1)"), "{text}");
        assert!(
            text.contains("├── delivery (supervisor, running)"),
            "{text}"
        );
        assert!(
            text.contains("└── escalation (escalation, running)  2 pending, next due 2026-01-01T00:05:00.000Z; fired 1, cancelled 3, failed 0"),
            "{text}"
        );
        assert!(
            text.contains("│   └── channel:email (channel, running)  circuit open, outbox 4"),
            "{text}"
        );
    }
}
