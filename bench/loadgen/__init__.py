"""Load generators and process plumbing shared by the benchmarks: wrk with
Lua scripts, the epoll watcher client (C, compiled at run time), installing
the Debian tools a benchmark needs, and stopping what a benchmark started."""
