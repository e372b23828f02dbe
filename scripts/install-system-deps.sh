#!/usr/bin/env bash
# Debian packages the tests use (real peers, see ../shared/PEERS.md). Installs what is missing when
# run as root; otherwise says what to install and fails, so a test run never silently skips peers.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
# fonts so that screenshots of the page show text
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
# SIP peers: baresip (room system / phone stand-in), sipp (scenarios, load), tshark (packet checks),
# sox (test audio and measuring recordings)
command -v baresip >/dev/null || need+=(baresip-core)
# video for baresip (avcodec: H.264, avformat: a clip as its camera), and ffmpeg to make the clip
[ -e /usr/lib/baresip/modules/avcodec.so ] || need+=(baresip-ffmpeg)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v sipp >/dev/null || need+=(sip-tester)
command -v tshark >/dev/null || need+=(tshark)
command -v sox >/dev/null || need+=(sox)
# MQTT broker for the MQTT bridge's tests (installed in /usr/sbin, which a non-root PATH may lack)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || need+=(mosquitto)
# a carrier's registrar and authenticating proxy for the trunk tests (digest over SQLite)
[ -x /usr/sbin/kamailio ] || command -v kamailio >/dev/null || need+=(kamailio)
[ -e /usr/lib/x86_64-linux-gnu/kamailio/modules/db_sqlite.so ] || need+=(kamailio-sqlite-modules)
# kamailio as a registrar over TLS (trunks over TLS)
[ -e /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so ] || need+=(kamailio-tls-modules)
# a trunk's DNS (NAPTR/SRV/A records for RFC 3263 failover); dnsmasq-base: the program, no service
[ -x /usr/sbin/dnsmasq ] || command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
# a streaming server for the live-stream tests: nginx with its RTMP module (started by the tests)
[ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need+=(nginx-light libnginx-mod-rtmp)
# ... and its stream module, to take RTMPS (TLS in front of RTMP) as streaming platforms do
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
# browsers in front of several nodes: haproxy with its health checks (configs/haproxy-gateway.cfg)
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
# the shared store of a cluster's nodes (started by the tests in a folder of their own)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "Missing Debian packages for the tests: ${need[*]}" >&2
  echo "Install them with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "Installing Debian packages: ${need[*]}"
apt-get update -qq
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
# (packages with a service, nginx, must not start it: the tests start their own on free ports)
policy=/usr/sbin/policy-rc.d
made_policy=no
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=yes
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
if [ "$made_policy" = yes ]; then rm -f "$policy"; fi
