"""Stand-in for Huawei's ais_bench (tests only); run as `python3 -m ais_bench`. See tests/stubs/README.md."""
