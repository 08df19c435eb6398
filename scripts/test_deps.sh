# Sourced by scripts/test.sh: the Debian packages the tests use, installed when
# missing (as root: apt-get; otherwise a note, and the tests that need them skip).
#   python3-venv    the virtualenv
#   mosquitto       a real MQTT broker, started by the test fixtures on loopback
#   systemd         systemd-analyze, for the unit's security exposure
#   can-utils       canplayer/cansend for the vcan tier
#   user-mode-linux, busybox-static   a kernel with vcan where this one has none
#   iproute2        network namespaces for the connectivity tests
need=()
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || need+=(mosquitto)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v canplayer >/dev/null || need+=(can-utils)
# a kernel with vcan: this one's (a Pi, a laptop: modprobe vcan), else User-Mode Linux
[ -x /usr/bin/linux.uml ] || [ -e /sys/class/net/vcan0 ] || modinfo vcan >/dev/null 2>&1 \
  || need+=(user-mode-linux)
command -v busybox >/dev/null || need+=(busybox-static)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "== installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 \
        && ! { apt-get update -qq >&2 \
               && apt-get install -y -qq --no-install-recommends "${need[@]}" >&2; }; then
      # e.g. no user-mode-linux for this architecture: the tests that need it skip
      echo "note: could not install all of ${need[*]}; the tests that need them skip" >&2
    fi
  else
    echo "note: missing ${need[*]} (sudo apt-get install -y ${need[*]}); the tests that" \
         "need them skip" >&2
  fi
fi
unset need
