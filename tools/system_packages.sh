#!/usr/bin/env bash
# Run by `deno task test` before the suite: the Debian packages the tests need beyond Node and Mesa's GL
# driver (lavapipe, for the Vulkan adapter CI measures on, Chromium, for the playground's browser test, and
# ffmpeg, which writes MP4 and WebP videos and whose ffprobe the video tests read them back with).
# As root the missing ones are installed; otherwise the run stops at once with the one command that fixes it.
set -uo pipefail
packages=(libgl1-mesa-dri mesa-vulkan-drivers chromium ffmpeg)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "system_packages.sh: not a Debian system; the tests need Mesa (llvmpipe or lavapipe), Chromium at /usr/bin/chromium and ffmpeg (with ffprobe) on PATH" >&2
  exit 0
fi
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

command="apt-get install -y ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "the tests need Debian packages that are not installed: ${missing[*]}. Install them with: sudo $command" >&2
  exit 1
fi
echo "installing the Debian packages the tests need: ${missing[*]}" >&2
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/tmp/ditserve-apt.log 2>&1; then
  tail -n 20 /tmp/ditserve-apt.log >&2
  echo "installing ${missing[*]} failed (log above); run: $command" >&2
  exit 1
fi
