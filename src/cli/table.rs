//! Aligned text tables for command output: a header line, one line per row, columns padded
//! to their widest cell (the last column is not padded).

/// Renders `rows` under `headers`.
pub(crate) fn render<const N: usize>(headers: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; N]| {
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
    };
    line(headers);
    for row in rows {
        line(std::array::from_fn(|i| row[i].as_str()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let out = super::render(
            ["A", "LONG HEADER", "LAST"],
            &[["xyz".into(), "1".into(), "tail".into()]],
        );
        assert_eq!(out, "A    LONG HEADER  LAST\nxyz  1            tail\n");
    }
}
