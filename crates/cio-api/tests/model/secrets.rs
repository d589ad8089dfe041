//! No secret (nor the `Authorization` value built from it) appears in any `Debug` output, so a
//! `tracing::debug!(?client)` or a panic message cannot leak it.

use cio_api::{
    AppClient, AppCredentials, BatchClient, PipelinesClient, PipelinesCredentials, Region,
    TrackClient, TrackCredentials,
};

const SITE_ID: &str = "site-7f3a";
const TRACK_KEY: &str = "track-key-SECRET-1";
const APP_KEY: &str = "app-key-SECRET-2";
const WRITE_KEY: &str = "write-key-SECRET-3";

struct Creds {
    track: TrackCredentials,
    app: AppCredentials,
    pipelines: PipelinesCredentials,
}

fn creds() -> Creds {
    Creds {
        track: TrackCredentials::new(SITE_ID, TRACK_KEY),
        app: AppCredentials::new(APP_KEY),
        pipelines: PipelinesCredentials::new(WRITE_KEY),
    }
}

/// Everything that must never be printed: the keys, and each header value and its token.
fn forbidden(c: &Creds) -> Vec<String> {
    let mut out = vec![
        TRACK_KEY.to_owned(),
        APP_KEY.to_owned(),
        WRITE_KEY.to_owned(),
        "SECRET".to_owned(),
    ];
    for h in [c.track.header(), c.app.header(), c.pipelines.header()] {
        let value = h.to_str().expect("ASCII header").to_owned();
        let token = value.split_once(' ').map(|(_, t)| t.to_owned());
        out.push(value);
        out.extend(token);
    }
    out
}

fn assert_hidden(what: &str, printed: &str, c: &Creds) {
    for secret in forbidden(c) {
        assert!(
            !printed.contains(&secret),
            "{what} shows {secret:?}: {printed}"
        );
    }
}

#[test]
fn credentials_never_show_their_secret() {
    let c = creds();
    let printed = format!("{:?} {:?} {:?}", c.track, c.app, c.pipelines);
    assert_hidden("credentials' Debug", &printed, &c);
    assert!(printed.contains("***"), "{printed}");
    assert!(
        printed.contains(SITE_ID),
        "the site id is not secret: {printed}"
    );
    let secret = format!("{:?} {}", c.app.app_api_key, c.pipelines.write_key);
    assert_eq!(secret, "*** ***");
}

#[test]
fn header_values_are_sensitive_and_never_printed() {
    let c = creds();
    let headers = [c.track.header(), c.app.header(), c.pipelines.header()];
    for h in &headers {
        assert!(h.is_sensitive());
    }
    assert_hidden("header Debug", &format!("{headers:?}"), &c);
    // The secret is on the wire, and only there.
    assert_eq!(headers[1].to_str().ok(), Some("Bearer app-key-SECRET-2"));
}

#[tokio::test]
async fn clients_never_show_credentials() {
    let c = creds();
    let region = Region::custom("http://127.0.0.1:9").expect("a valid origin");
    let track = TrackClient::new(region.clone(), c.track.clone());
    let batch = BatchClient::new(region.clone(), c.track.clone());
    let app = AppClient::new(region.clone(), c.app.clone()).retry_sends(true);
    let pipelines = PipelinesClient::new(region, c.pipelines.clone());
    for (what, printed) in [
        ("TrackClient", format!("{track:?}")),
        ("BatchClient", format!("{batch:?}")),
        ("AppClient", format!("{app:?}")),
        ("PipelinesClient", format!("{pipelines:?}")),
        ("pretty TrackClient", format!("{track:#?}")),
    ] {
        assert_hidden(what, &printed, &c);
        assert!(printed.contains("127.0.0.1:9"), "{what}: {printed}");
    }
}
