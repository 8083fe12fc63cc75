from controller import progress

TEXT = """# HELP kubevirt_cdi_import_progress_total The import progress in percentage
# TYPE kubevirt_cdi_import_progress_total counter
kubevirt_cdi_import_progress_total{ownerUID="other"} 99.0
kubevirt_cdi_import_progress_total{ownerUID="abc-123"} 45.3421
process_cpu_seconds_total 1.5
"""


def test_reads_the_progress_of_its_owner_with_two_decimals():
    assert progress.parse(TEXT, "abc-123") == "45.34%"


def test_missing_owner_gives_no_progress():
    assert progress.parse(TEXT, "nope") is None
    assert progress.parse("", "abc-123") is None


def test_out_of_range_values_are_clamped():
    text = 'kubevirt_cdi_import_progress_total{ownerUID="u"} 100.7\n'
    assert progress.parse(text, "u") == "100.00%"


def test_upload_progress_is_read_from_the_upload_servers_metric():
    text = ('kubevirt_cdi_import_progress_total{ownerUID="u"} 10\n'
            'kubevirt_cdi_upload_progress_total{ownerUID="u"} 42.5\n')
    assert progress.parse(text, "u", "kubevirt_cdi_upload_progress_total") == "42.50%"
    assert progress.parse(text, "u") == "10.00%"
