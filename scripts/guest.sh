# Sourced by scripts/uml/run.sh and scripts/qemu/run.sh, the two guest runners:
# what they share. A runner runs CMD as root inside a throwaway kernel that has
# a vcan0, and exits with:
#   CMD's status  CMD ran to its end in the guest
#   122           the guest did not boot: it crashed, or hung, before CMD started
#   123           the guest crashed (a kernel panic, an Oops) or stopped while CMD ran
#   124           CMD did not finish within the runner's timeout
#   125           this runner cannot exist here (its packages are missing and
#                 cannot be installed)
# On 122, 123 and 124 one line on stderr names the cause with the kernel's own
# words ("Kernel panic - not syncing: ..."); when BAVARD_GUEST_CAUSE_FILE names a
# file, that line goes there instead (scripts/vcan_run.sh says it in its own words).
# The guest's init writes "started" in the exchange directory just before CMD
# and "rc" after it: that is how a crash at boot is told from one under CMD.
GUEST_NOBOOT=122
GUEST_CRASHED=123
GUEST_TIMEOUT=124
GUEST_UNAVAILABLE=125

# guest_install WHO PKG...: install the missing Debian packages PKG (as root);
# otherwise say what to install and return 1.
guest_install() {
  local who=$1
  shift
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "$who: needs the Debian packages: $* (sudo apt-get install -y $*)" >&2
    return 1
  fi
  echo "$who: installing $*" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 ||
    { apt-get update -qq >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2; } ||
    { echo "$who: could not install $*" >&2; return 1; }
}

# guest_cmd_file DIR CMD...: DIR/cmd.sh, the caller's exported environment, its
# directory, then CMD; DIR/rw, the host directories the guest mounts read-write
# at the same paths: the current one and those of BAVARD_VM_RW (colon-separated).
guest_cmd_file() {
  local dir=$1
  shift
  {
    (set -o posix; export -p) |
      grep -v -E '^(declare -x|export) (PWD|OLDPWD|SHLVL|_|HOSTNAME|TERM|TMPDIR|BAVARD_GUEST_[A-Z_]*)='
    printf 'cd %q || exit 125\n' "$PWD"
    printf 'exec'
    printf ' %q' "$@"
    printf '\n'
  } >"$dir/cmd.sh"
  { printf '%s\n' "$PWD"; [ -z "${BAVARD_VM_RW:-}" ] || tr ':' '\n' <<<"$BAVARD_VM_RW"; } |
    grep -v -x -E '/?' >"$dir/rw"
}

# guest_run BOOT_S RUN_S DIR PROGRAM...: run the guest's PROGRAM (linux.uml,
# qemu-system-*) for at most RUN_S seconds, and stop it sooner when DIR/started
# has not appeared after BOOT_S seconds. Sets GUEST_STATUS (PROGRAM's status, 124
# when timed out) and GUEST_BOOT_HUNG (1 when stopped for not booting).
guest_run() {
  local boot_s=$1 run_s=$2 dir=$3 pid ticks=0
  shift 3
  GUEST_BOOT_HUNG=0
  # bash's own "Aborted" line for a guest that died of a signal goes to
  # /dev/null (fd 2 here); the program's stderr is the caller's (fd 4)
  {
    timeout -k 5 "$run_s" "$@" 2>&4 4>&- &
    pid=$!
    # timeout runs in its own process group: a Ctrl-C reaches it through here
    # shellcheck disable=SC2064
    trap "kill -TERM $pid 2>/dev/null; wait $pid; exit 130" INT TERM HUP
    while [ ! -e "$dir/started" ] && kill -0 "$pid"; do
      if [ "$ticks" -ge $((boot_s * 10)) ]; then
        GUEST_BOOT_HUNG=1
        kill -TERM "$pid"
        break
      fi
      sleep 0.1
      ticks=$((ticks + 1))
    done
    wait "$pid"
    GUEST_STATUS=$?
    trap - INT TERM HUP
  } 4>&2 2>/dev/null
}

# guest_cause KERNEL_LOG: the kernel's own lines that say why a guest died, on
# one line (at most three, " / " between them), or nothing.
guest_cause() {
  sed -e 's/\r$//' -e 's/^<[0-9]>//' -e 's/^\[ *[0-9.]*\] //' "$1" 2>/dev/null |
    grep -a -E 'Kernel panic|BUG:|Oops|ptrace set fp regs failed|general protection fault|Out of memory|bavard-init:' |
    awk '!seen[$0]++ { out = out (n++ ? " / " : "") $0 } n == 3 { exit } END { print out }'
}

# guest_status WHO DIR KERNEL_LOG RUN_S: the runner's exit status after
# guest_run, saying why on stderr (or in BAVARD_GUEST_CAUSE_FILE) when the guest
# gave no result.
guest_status() {
  local who=$1 dir=$2 log=$3 run_s=$4 cause status what
  if [ -s "$dir/rc" ]; then
    cat "$dir/rc"
    return
  fi
  cause=$(guest_cause "$log")
  if [ ! -e "$dir/started" ]; then
    status=$GUEST_NOBOOT
    if [ "$GUEST_BOOT_HUNG" = 1 ] || [ "$GUEST_STATUS" -eq 124 ]; then
      what="the guest did not boot (no sign of life in time)"
    else
      what="the guest did not boot (status $GUEST_STATUS)"
    fi
  elif [ "$GUEST_STATUS" -eq 124 ]; then
    status=$GUEST_TIMEOUT
    what="timed out: the command did not finish within ${run_s} s"
  else
    status=$GUEST_CRASHED
    what="the guest crashed while the command ran"
  fi
  [ -n "$cause" ] && what="$what: $cause"
  if [ -n "${BAVARD_GUEST_CAUSE_FILE:-}" ]; then
    printf '%s\n' "$what" >"$BAVARD_GUEST_CAUSE_FILE"
  else
    echo "$who: $what" >&2
  fi
  echo "$status"
}
