//! Reachability probes for `crm doctor`: the Telegram Bot API (getMe) and the SMTP server
//! (connect, greeting, EHLO, STARTTLS/TLS and login as configured). Each runs on its own
//! short-lived thread and runtime, so callers need no async context, and is bounded by
//! `timeout`.

use std::time::Duration;

use crate::domain::notifications::{SmtpSettings, TelegramSettings};

fn block_on<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(f))
            .map_err(|e| format!("cannot start a runtime: {e}"))
    })
    .join()
    .map_err(|_| "the probe panicked".to_string())?
}

/// getMe against the configured Bot API: the bot's @username when the token works.
pub fn telegram(s: &TelegramSettings, timeout: Duration) -> Result<String, String> {
    let s = s.clone();
    block_on(async move {
        let url = s
            .api_url
            .parse()
            .map_err(|e| format!("Bot API URL {:?}: {e}", s.api_url))?;
        let client = teloxide::net::default_reqwest_settings()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let bot = teloxide::Bot::with_client(s.token.clone(), client).set_api_url(url);
        use teloxide::requests::Requester;
        match tokio::time::timeout(timeout, bot.get_me()).await {
            Err(_) => Err(format!("no answer from {} within {timeout:?}", s.api_url)),
            // The error text of a request never contains the token (it is in the URL only).
            Ok(Err(e)) => Err(format!("{}: {e}", s.api_url)),
            Ok(Ok(me)) => Ok(me.username.clone().unwrap_or_default()),
        }
    })?
}

/// Opens an SMTP session as the worker would and closes it again.
pub fn smtp(s: &SmtpSettings, timeout: Duration) -> Result<(), String> {
    let mut s = s.clone();
    s.timeout_secs = timeout.as_secs().max(1);
    block_on(async move {
        let t = super::email::build_transport(&s)?;
        match tokio::time::timeout(timeout, t.test_connection()).await {
            Err(_) => Err(format!(
                "no answer from {}:{} within {timeout:?}",
                s.host, s.port
            )),
            Ok(Err(e)) => Err(format!("{}:{}: {e}", s.host, s.port)),
            Ok(Ok(false)) => Err(format!("{}:{} did not accept a session", s.host, s.port)),
            Ok(Ok(true)) => Ok(()),
        }
    })?
}
