"""`python -m vidops.info --kernels` / `vidops.kernel_report`: progress on one redrawn line on a
terminal, nothing but the table when the output is piped."""
import io

from vidops import kernel_report
from vidops._progress import StatusLine


def test_status_line_redraws_one_line_on_a_terminal():
    out = io.StringIO()
    with StatusLine(out, interactive=True) as status:
        for i in range(1, 4):
            status(f"compiled {i}/3")
    text = out.getvalue()
    assert "\n" not in text
    assert text == "".join(f"\r\x1b[Kcompiled {i}/3" for i in range(1, 4)) + "\r\x1b[K"  # cleared at the end


def test_status_line_prints_nothing_when_piped():
    out = io.StringIO()  # not a TTY
    with StatusLine(out) as status:
        for i in range(540):
            status(f"compiled {i}/540")
    assert out.getvalue() == ""


def test_kernel_report_piped_prints_only_the_table(monkeypatch, capsys):
    def fake_report(archs, ops, dtypes, jobs, use_cache, cuda, progress, sample, cuda_objects, triton):
        for n in range(1, 541):
            if progress:
                progress(f"compiled {n}/540 (0 s)")
        return {"triton": {"rows": [], "capture_errors": []}, "cuda": None}

    monkeypatch.setattr(kernel_report, "full_report", fake_report)
    monkeypatch.setattr(kernel_report, "format_table", lambda report: "THE TABLE")
    assert kernel_report.main(["--arch", "sm_90"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "THE TABLE"
    assert "compiled" not in captured.err
