# Sourced by scripts/test.sh: the Debian packages the tests use, installed when
# missing (as root: apt-get; otherwise a note, and the tests that need them skip).
#   python3-venv    the virtualenv
#   mosquitto       a real MQTT broker, started by the test fixtures on loopback;
#                   when installed here, its own service is disabled and stopped
#   systemd         systemd-analyze, for the unit's security exposure
#   can-utils       canplayer/cansend for the vcan tier
#   iproute2        network namespaces for the connectivity tests
#   tmux            a real terminal for bavard live's full-screen view
#   zsh             bavard completion zsh, checked in a real zsh
#   groff-base, man-db   bavard man, rendered with warnings on
#   gpsd            a real gpsd for the GPS source's tests, started by the test on
#                   loopback; when installed here, its own service and socket are
#                   disabled and stopped
# and where this kernel has no vcan module, the kernels of the vcan tier
# (scripts/vcan_run.sh):
#   user-mode-linux, busybox-static   User-Mode Linux
#   qemu-system-x86 (qemu-system-arm on arm64), kmod   QEMU, for hosts where
#                   UML dies at boot; Debian's kernel for it is fetched once into
#                   ~/.cache/bavard-vm (scripts/qemu/run.sh --prepare)
# `. scripts/test_deps.sh --functions-only` defines the functions and installs nothing.

# test_deps_quiet_service NAME: the service of a package this script has just
# installed is disabled and stopped: the tests start their own, and the
# machine is left as it was. Without systemd running (a container, a CI
# sandbox) `systemctl disable` still removes the unit's links, systemd's and
# SysV init's (update-rc.d); without systemctl at all they are removed by hand.
test_deps_quiet_service() {
  local name=$1
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now --quiet "$name" >/dev/null 2>&1 ||
      echo "note: could not disable $name (systemctl disable --now $name)" >&2
    return 0
  fi
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --quiet "$name" >/dev/null 2>&1 || true
  elif [ -x "/etc/init.d/$name" ] && command -v update-rc.d >/dev/null 2>&1; then
    update-rc.d "$name" disable >/dev/null 2>&1 || true
  fi
  rm -f /etc/systemd/system/*.wants/"$name.service"
  if [ -x "/etc/init.d/$name" ] && command -v invoke-rc.d >/dev/null 2>&1; then
    invoke-rc.d "$name" stop >/dev/null 2>&1 || true
  fi
  return 0
}

test_deps_install() {
  local need=() qemu_pkg='' no_vcan=0
  python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
  [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || need+=(mosquitto)
  command -v systemd-analyze >/dev/null || need+=(systemd)
  command -v canplayer >/dev/null || need+=(can-utils)
  command -v ip >/dev/null || need+=(iproute2)
  command -v tmux >/dev/null || need+=(tmux)
  command -v zsh >/dev/null || need+=(zsh)
  command -v groff >/dev/null || need+=(groff-base)
  command -v man >/dev/null || need+=(man-db)
  [ -x /usr/sbin/gpsd ] || command -v gpsd >/dev/null || need+=(gpsd)
  # a kernel with vcan: this one's (a Pi, a laptop: modprobe vcan), else UML, else QEMU
  [ -e /sys/class/net/vcan0 ] || modinfo vcan >/dev/null 2>&1 || no_vcan=1
  if [ "$no_vcan" = 1 ]; then
    case $(uname -m) in
      x86_64) qemu_pkg=qemu-system-x86 ;;
      aarch64) qemu_pkg=qemu-system-arm ;;
    esac
    [ -x /usr/bin/linux.uml ] || need+=(user-mode-linux)
    command -v busybox >/dev/null || need+=(busybox-static)
    command -v depmod >/dev/null || [ -x /sbin/depmod ] || need+=(kmod)
    if [ -n "$qemu_pkg" ] && ! command -v "qemu-system-$(uname -m)" >/dev/null; then
      need+=("$qemu_pkg")
    fi
  fi
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
      case " ${need[*]} " in
        *" mosquitto "*) [ -x /usr/sbin/mosquitto ] && test_deps_quiet_service mosquitto ;;
      esac
      case " ${need[*]} " in
        *" gpsd "*) [ -x /usr/sbin/gpsd ] && test_deps_quiet_service gpsd.socket &&
                      test_deps_quiet_service gpsd ;;
      esac
    else
      echo "note: missing ${need[*]} (sudo apt-get install -y ${need[*]}); the tests that" \
           "need them skip" >&2
    fi
  fi
  if [ "$no_vcan" = 1 ] && command -v "qemu-system-$(uname -m)" >/dev/null; then
    "$(dirname "${BASH_SOURCE[0]}")/qemu/run.sh" --prepare ||
      echo "note: no kernel for QEMU; the tests that need it skip" >&2
  fi
  return 0
}

[ "${1-}" = --functions-only ] || test_deps_install
