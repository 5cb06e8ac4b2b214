from lrtune.report import Report


def test_report_links_images_relative_to_the_report(tmp_path):
    (tmp_path / "figs").mkdir()
    fig = tmp_path / "figs" / "curve.png"
    fig.write_bytes(b"\x89PNG")
    report = Report("Demo")
    report.heading("Range test")
    report.paragraph("Chosen rate 0.1.")
    report.table(["epoch", "loss"], [[1, 0.25], [2, None]])
    report.image(fig, "loss curve", relative_to=tmp_path)
    path = report.write(tmp_path / "report.md")
    text = path.read_text()
    assert text.startswith("# Demo\n\n## Range test\n\nChosen rate 0.1.")
    assert "| 2 | - |" in text
    assert "![loss curve](figs/curve.png)" in text
