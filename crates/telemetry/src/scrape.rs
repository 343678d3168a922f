//! The `/metrics` exposition, and the values a node reads from its state at each scrape.
//!
//! Values that are state rather than events (role, term, indexes, the Raft core's own event
//! counts, each peer's reachability) are written by a [`Collector`] that looks at the node
//! when Prometheus asks, with the helpers below: nothing to keep in step between scrapes.

use std::fmt;

pub use prometheus_client::collector::Collector;
pub use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::encoding::EncodeMetric;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`encode`]'s output (the Prometheus text format, version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Everything registered in `registry`, in the Prometheus text format.
pub fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

/// One gauge without labels. `name` carries its unit (`_seconds`, `_bytes`).
pub fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    let gauge = ConstGauge::new(value);
    let metric = enc.encode_descriptor(name, help, None, gauge.metric_type())?;
    gauge.encode(metric)
}

/// One gauge with one label, a series per `(label value, value)`.
pub fn gauges<V: Into<f64>>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    series: impl IntoIterator<Item = (String, V)>,
) -> fmt::Result {
    let mut metric = enc.encode_descriptor(name, help, None, ConstGauge::new(0.0).metric_type())?;
    for (value_label, value) in series {
        let labels = [(label, value_label)];
        ConstGauge::new(value.into()).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One counter without labels; `name` without `_total`, which the encoder adds.
pub fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let counter = ConstCounter::new(value);
    let metric = enc.encode_descriptor(name, help, None, counter.metric_type())?;
    counter.encode(metric)
}

/// One counter with one label, a series per `(label value, value)`.
pub fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    series: impl IntoIterator<Item = (String, u64)>,
) -> fmt::Result {
    let mut metric =
        enc.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (value_label, value) in series {
        let labels = [(label, value_label)];
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;

    impl Collector for Fixed {
        fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
            gauge(&mut enc, "quorate_term", "Current term.", 7.0)?;
            gauges(
                &mut enc,
                "quorate_peer_reachable",
                "Reachable peers.",
                "peer",
                [("2".to_string(), 1.0), ("3".to_string(), 0.0)],
            )?;
            counter(&mut enc, "quorate_elections_started", "Elections.", 3)?;
            counters(
                &mut enc,
                "quorate_fencing_rejections",
                "Fencing.",
                "cause",
                [("stale_lease_token".to_string(), 2)],
            )
        }
    }

    #[test]
    fn collected_values_are_encoded_as_prometheus_text() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed));
        let text = encode(&registry).unwrap();
        for line in [
            "# TYPE quorate_term gauge",
            "quorate_term 7.0",
            "quorate_peer_reachable{peer=\"2\"} 1.0",
            "quorate_peer_reachable{peer=\"3\"} 0.0",
            "# TYPE quorate_elections_started_total counter",
            "quorate_elections_started_total 3",
            "quorate_fencing_rejections_total{cause=\"stale_lease_token\"} 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from:\n{text}"
            );
        }
    }
}
