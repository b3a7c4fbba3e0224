//! Active probing of workers: health checks with model and kind discovery, and the
//! `/metrics` load scrape. [`prober::Prober`] runs one task per worker inside a Pingora
//! background service; [`discovery`] and [`prom`] are the pure parsers it uses.

pub mod discovery;
pub mod prober;
pub mod prom;
