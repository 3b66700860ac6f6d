# Helpers the benchmark scripts share (sourced, not run).

# CPU time (utime + stime, in clock ticks) of process $1 so far.
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
ticks=$(getconf CLK_TCK)

# Wait (up to 10 s) until something listens on port $1 of 127.0.0.1.
wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# "model name, N cores" of this machine.
machine() { echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"; }

# The gateway binary to measure: $OTPGW_BIN when set (to compare two builds in one
# sitting), else the release build, built now.
gateway_bin() {
    if [ -n "${OTPGW_BIN:-}" ]; then
        echo "$OTPGW_BIN"
    else
        cargo build --release -q -p otpgw
        echo target/release/otpgw
    fi
}
