//! The console's log-in and session, as an attacker would try them: a wrong or
//! revoked token, a forged or stale session cookie, a cross-site log-in, a write
//! riding on the cookie without its CSRF token; and the headers every page carries.

mod common;

use common::{TestServer, into_reply, sent};
use ledger_server::Scope;

const POLICE: &str = "974760673";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .build()
        .into()
}

/// Logs in with `token`: the reply and the `name=value` of each cookie set.
fn login(s: &TestServer, token: &str, site: Option<&str>) -> (common::Reply, Vec<String>) {
    let mut req = agent()
        .post(&s.url("/console/login"))
        .header("Content-Type", "application/x-www-form-urlencoded");
    if let Some(site) = site {
        req = req.header("Sec-Fetch-Site", site);
    }
    let r = into_reply(req.send(format!("token={token}")).unwrap());
    let cookies = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.clone())
        .collect();
    (r, cookies)
}

fn pair(cookie: &str) -> String {
    cookie.split(';').next().unwrap().to_string()
}

fn value(cookies: &[String], name: &str) -> String {
    cookies
        .iter()
        .map(|c| pair(c))
        .find_map(|p| p.strip_prefix(&format!("{name}=")).map(str::to_string))
        .unwrap()
}

fn with_cookie(
    s: &TestServer,
    method: &str,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: &str,
) -> common::Reply {
    let url = s.url(path);
    let resp = match method {
        "GET" => agent().get(&url).header("Cookie", cookie).call(),
        _ => {
            let mut req = agent()
                .post(&url)
                .header("Cookie", cookie)
                .header("Content-Type", "application/json");
            if let Some(c) = csrf {
                req = req.header("X-CSRF-Token", c);
            }
            req.send(body)
        }
    };
    into_reply(resp.unwrap())
}

#[test]
fn a_session_carries_the_token_and_nothing_more() {
    let s = TestServer::start("");
    let write = s.token(POLICE, &[Scope::Write, Scope::Read]);

    // A wrong token: back to the log-in, no cookie, and the token in no URL.
    let (r, cookies) = login(&s, "lt_wrong", Some("same-origin"));
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/console/?login=failed"));
    assert!(cookies.is_empty());

    // A log-in posted from another site is refused.
    let (r, cookies) = login(&s, &write, Some("cross-site"));
    assert_eq!((r.status, cookies.len()), (403, 0), "{}", r.text);

    let (r, cookies) = login(&s, &write, Some("same-origin"));
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/console/"));
    let session = cookies
        .iter()
        .find(|c| c.starts_with("ledger_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    assert!(
        !session.contains("Secure"),
        "plain HTTP on loopback: {session}"
    );
    let csrf_cookie = cookies
        .iter()
        .find(|c| c.starts_with("ledger_csrf="))
        .unwrap();
    assert!(!csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict"));
    let csrf = value(&cookies, "ledger_csrf");
    let cookie = format!("{}; {}", pair(session), pair(csrf_cookie));

    // The session reads as the token would.
    let me = with_cookie(&s, "GET", "/v1/whoami", &cookie, None, "");
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["org"], POLICE);
    assert!(!me.text.contains(&write), "the token is never echoed");

    // A write riding on the cookie: refused without the CSRF token, or with another.
    let ev = sent("e-console", "M-CONSOLE").to_string();
    let r = with_cookie(&s, "POST", "/v1/events", &cookie, None, &ev);
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("csrf")),
        "{}",
        r.text
    );
    let r = with_cookie(
        &s,
        "POST",
        "/v1/events",
        &cookie,
        Some("not-the-token"),
        &ev,
    );
    assert_eq!(r.status, 403, "{}", r.text);
    let r = with_cookie(&s, "POST", "/v1/events", &cookie, Some(&csrf), &ev);
    assert_eq!(r.status, 200, "{}", r.text);

    // A forged session id is nobody.
    let forged = format!(
        "ledger_session=AAAA{}",
        &value(&cookies, "ledger_session")[4..]
    );
    let r = with_cookie(&s, "GET", "/v1/whoami", &forged, None, "");
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (401, Some("session_expired"))
    );

    // A bearer header wins over a cookie, so a cookie never widens a token.
    let other = s.token("889640782", &[Scope::Read]);
    let r = into_reply(
        agent()
            .get(&s.url("/v1/whoami"))
            .header("Cookie", &cookie)
            .header("Authorization", &format!("Bearer {other}"))
            .call()
            .unwrap(),
    );
    assert_eq!(r.body["org"], "889640782");

    // Log-out needs the CSRF token too, then the session is gone.
    let r = into_reply(
        agent()
            .post(&s.url("/console/logout"))
            .header("Cookie", &cookie)
            .send("")
            .unwrap(),
    );
    assert_eq!(r.status, 403);
    let r = into_reply(
        agent()
            .post(&s.url("/console/logout"))
            .header("Cookie", &cookie)
            .header("X-CSRF-Token", &csrf)
            .send("")
            .unwrap(),
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        with_cookie(&s, "GET", "/v1/whoami", &cookie, None, "").status,
        401
    );
}

#[test]
fn a_revoked_token_ends_its_sessions() {
    let s = TestServer::start("");
    let read = s.token(POLICE, &[Scope::Read]);
    let (_, cookies) = login(&s, &read, None);
    let cookie = pair(
        cookies
            .iter()
            .find(|c| c.starts_with("ledger_session="))
            .unwrap(),
    );
    assert_eq!(
        with_cookie(&s, "GET", "/v1/whoami", &cookie, None, "").status,
        200
    );
    let mut store = ledger_server::tokens::TokenStore::load(&s.dir.join("tokens.json")).unwrap();
    let id = store.list()[0].id.clone();
    store.revoke(&id).unwrap();
    let r = with_cookie(&s, "GET", "/v1/whoami", &cookie, None, "");
    assert_eq!(r.status, 401, "{}", r.text);
}

#[test]
fn every_page_carries_a_strict_content_security_policy() {
    let s = TestServer::start("");
    let r = into_reply(agent().get(&s.url("/")).call().unwrap());
    assert_eq!((r.status, r.header("location")), (303, Some("/console/")));
    for path in [
        "/console/",
        "/console/app.js",
        "/console/vendor/noble-hashes/blake3.js",
    ] {
        let r = into_reply(agent().get(&s.url(path)).call().unwrap());
        assert_eq!(r.status, 200, "{path}");
        let csp = r.header("content-security-policy").unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
    }
    let page = into_reply(agent().get(&s.url("/console/")).call().unwrap()).text;
    assert!(
        !page.contains("<script>") && !page.contains("style="),
        "no inline script or style"
    );
    for path in [
        "/console/nope.js",
        "/console/../ledger.json",
        "/console/%2e%2e/signing.key",
    ] {
        let r = into_reply(agent().get(&s.url(path)).call().unwrap());
        assert_eq!(r.status, 404, "{path}: {}", r.text);
    }
}

#[test]
fn the_page_preloads_every_module_it_imports() {
    // The page names its modules up front (modulepreload), so they load at once,
    // not import by import: each named one is served, and each module any of them
    // imports is named too.
    let s = TestServer::start("");
    let page = into_reply(agent().get(&s.url("/console/")).call().unwrap()).text;
    let preloaded: Vec<String> = page
        .split("<link rel=\"modulepreload\" href=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect();
    assert!(preloaded.contains(&"/console/app.js".to_string()), "{page}");
    for path in &preloaded {
        let r = into_reply(agent().get(&s.url(path)).call().unwrap());
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.header("content-type"),
            Some("text/javascript; charset=utf-8"),
            "{path}"
        );
        let dir = &path[..path.rfind('/').unwrap() + 1];
        let imports = r.text.lines().filter_map(|l| {
            let l = l.strip_prefix("import ")?;
            let spec = l.rsplit(" from ").next()?.trim_end_matches(';');
            Some(spec.trim_matches(|c| c == '\'' || c == '"'))
        });
        for spec in imports {
            let target = format!("{dir}{}", spec.trim_start_matches("./"));
            assert!(
                preloaded.contains(&target),
                "{path} imports {spec}, which the page does not preload"
            );
        }
    }
}
