//! Medians, spread and the table.

#[derive(Clone, Copy, Debug)]
pub(crate) struct Summary {
    pub(crate) median: f64,
    pub(crate) iqr: f64,
    pub(crate) cv: f64,
}

pub(crate) fn summarize(v: &[f64]) -> Summary {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| {
        let idx = p * (s.len() - 1) as f64;
        let (lo, hi) = (idx.floor() as usize, idx.ceil() as usize);
        s[lo] + (s[hi] - s[lo]) * (idx - lo as f64)
    };
    let mean = s.iter().sum::<f64>() / s.len() as f64;
    let var = s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / s.len() as f64;
    Summary {
        median: q(0.5),
        iqr: q(0.75) - q(0.25),
        cv: if mean > 0.0 { var.sqrt() / mean } else { 0.0 },
    }
}

pub(crate) fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let idx = ((p / 100.0) * (s.len() as f64 - 1.0)).round() as usize;
    s[idx.min(s.len() - 1)]
}

pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) unit: &'static str,
    pub(crate) seta: Summary,
    pub(crate) base_name: &'static str,
    pub(crate) base: Summary,
    pub(crate) higher_is_better: bool,
    pub(crate) goal: String,
}

impl Row {
    /// seta relative to the baseline, oriented so that > 1 means seta is better.
    fn ratio(&self) -> f64 {
        if self.higher_is_better {
            self.seta.median / self.base.median
        } else {
            self.base.median / self.seta.median
        }
    }
}

pub(crate) fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub(crate) fn render(rows: &[Row], failed: &[(String, String)]) -> String {
    let mut out = String::from("| benchmark | seta (median ± IQR) | baseline | baseline (median ± IQR) | ratio (>1 = seta better) | goal |\n|---|---|---|---|---|---|\n");
    for r in rows {
        let flag = |s: &Summary| if s.cv > 0.10 { " ⚠ CV>10%" } else { "" };
        out.push_str(&format!(
            "| {} | {} ± {} {}{} | {} | {} ± {} {}{} | {:.2}× | {} |\n",
            r.name,
            fmt(r.seta.median),
            fmt(r.seta.iqr),
            r.unit,
            flag(&r.seta),
            r.base_name,
            fmt(r.base.median),
            fmt(r.base.iqr),
            r.unit,
            flag(&r.base),
            r.ratio(),
            r.goal
        ));
    }
    for (section, why) in failed {
        let why = why.replace('|', "/").replace('\n', " ");
        out.push_str(&format!(
            "| section `{section}` | **{}** | - | - | - | - |\n",
            why.chars().take(300).collect::<String>()
        ));
    }
    out
}
