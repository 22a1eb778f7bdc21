//! `cargo xtask bench`: what the package costs a page, measured against the size budget.

use crate::build::{self, LIB};
use crate::util::{kb, root, Args, Result};

/// At most 20 KB gzip for the wasm plus every JS file the entry loads (issue 7).
pub const BUDGET_GZIP: u64 = 20 * 1024;

pub fn run(args: &[String]) -> Result {
    Args::new(args).finish()?;
    build::build(false)?;
    let pkg = root().join("pkg");
    let s = build::print_sizes(&pkg)?;
    let wasm = s
        .rows
        .iter()
        .find(|r| r.0 == format!("{LIB}_bg.wasm"))
        .map(|r| r.2)
        .unwrap_or(0);
    println!("\nsize budget (gzip -9 of what the entry loads):");
    println!("  | what | gzip |");
    println!("  |---|---|");
    println!("  | wasm | {} |", kb(wasm));
    println!("  | JS the entry loads | {} |", kb(s.total_gzip - wasm));
    println!("  | total | {} |", kb(s.total_gzip));
    println!("  | budget | {} |", kb(BUDGET_GZIP));
    let pct = 100.0 * s.total_gzip as f64 / BUDGET_GZIP as f64;
    if s.total_gzip > BUDGET_GZIP {
        Err(format!(
            "over the size budget: {} bytes gzip > {BUDGET_GZIP} ({pct:.0}%)",
            s.total_gzip
        ))
    } else {
        println!(
            "bench: within the size budget ({pct:.0}% of {})",
            kb(BUDGET_GZIP)
        );
        Ok(())
    }
}
