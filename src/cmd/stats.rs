//! `palisade stats`: the running appliance's counters (ports, workers, pipeline, flow
//! table, drops by reason and by rule, policy generation), read over the control socket.

use std::path::PathBuf;

use anyhow::{bail, Result};
use control::socket::{Request, Response, DEFAULT_SOCKET};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The control socket of `palisade run`.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub control_socket: PathBuf,
    /// One JSON object, counter name → value.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: Args) -> Result<()> {
    let Response::Stats { counters } = super::live::ask(&args.control_socket, &Request::Stats)? else {
        bail!("unexpected answer from {}", args.control_socket.display());
    };
    print!("{}", render(&counters, args.json));
    Ok(())
}

/// `name value` lines (integers without a fraction), or a JSON object in the same order.
pub fn render(counters: &[(String, f64)], json: bool) -> String {
    let number = |v: f64| -> serde_json::Value {
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            serde_json::Value::from(v as i64)
        } else {
            serde_json::Value::from(v)
        }
    };
    if json {
        let body: Vec<String> = counters
            .iter()
            .map(|(k, v)| format!("  {}: {}", serde_json::Value::from(k.as_str()), number(*v)))
            .collect();
        return format!("{{\n{}\n}}\n", body.join(",\n"));
    }
    let width = counters.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    counters.iter().map(|(k, v)| format!("{k:<width$}  {}\n", number(*v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_and_json_in_order() {
        let c = vec![("port.a.rx_packets".to_owned(), 10.0), ("worker.0.cycles_per_packet".to_owned(), 12.5)];
        assert_eq!(render(&c, false), "port.a.rx_packets           10\nworker.0.cycles_per_packet  12.5\n");
        let j = render(&c, true);
        assert_eq!(j, "{\n  \"port.a.rx_packets\": 10,\n  \"worker.0.cycles_per_packet\": 12.5\n}\n");
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["port.a.rx_packets"], 10);
    }
}
