//! One module per command group.

pub mod agents;
pub mod app;
pub mod canary;
pub mod check;
pub mod control;
pub mod dark;
pub mod endpoint;
pub mod history;
pub mod promote;
pub mod rollback;
pub mod route;
pub mod status;
pub mod switch;
pub mod weight;

use disco::model::Match;
use disco::validate;

/// clap value parsers that validate names the way the agent will.
pub fn app_name(s: &str) -> Result<String, String> {
    validate::name("app name", s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}
pub fn instance_name(s: &str) -> Result<String, String> {
    validate::name("instance name", s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}
pub fn version_name(s: &str) -> Result<String, String> {
    validate::name("version name", s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}
pub fn address(s: &str) -> Result<String, String> {
    validate::address(s)
        .map(|a| a.to_string())
        .map_err(|e| e.to_string())
}
pub fn listen_address(s: &str) -> Result<String, String> {
    validate::listen_address(s)
        .map(|a| a.to_string())
        .map_err(|e| e.to_string())
}
pub fn health_path(s: &str) -> Result<String, String> {
    validate::health_path(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}
pub fn header_match(s: &str) -> Result<Match, String> {
    Match::parse_pair("header", s).map_err(|e| e.to_string())
}
pub fn cookie_match(s: &str) -> Result<Match, String> {
    Match::parse_pair("cookie", s).map_err(|e| e.to_string())
}
pub fn cidr_match(s: &str) -> Result<Match, String> {
    validate::cidr(s)
        .map(|_| Match::Cidr(s.to_string()))
        .map_err(|e| e.to_string())
}
