#!/usr/bin/env bash
# Regenerates the audio that SIP phone callers hear: the spoken prompts in gateway/calls/prompts/<lang>/<id>.flac
# (texts in scripts/prompts.tsv) and the hold music gateway/calls/prompts/hold_music.flac.
#
# Run once by developers, whenever prompts.tsv or this script changes; it needs espeak-ng and sox
# (Debian: apt-get install espeak-ng sox). Its outputs are committed to the repository. The gateway only plays
# the committed files and never generates audio at call time, so neither tool is needed to run it.
#
# Output format everywhere: mono, 16 kHz, 16-bit FLAC. Prompts: leading silence trimmed, 150 ms of trailing
# silence, peaks normalised to -3 dBFS. Hold music: a seamless ~12 s loop at about -24 dBFS RMS.
# The output is deterministic (no dither, no noise), so re-running without changes gives identical audio.
#
# Usage: scripts/make-prompts.sh
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tsv="$root/scripts/prompts.tsv"
out="$root/gateway/calls/prompts"

# espeak-ng settings. The plain voices were chosen over the +f/+m variants: the variants add breath noise and
# echo (noise that fills the pauses in a spectrogram), and the female ones move the formants up towards and
# beyond the 3.4 kHz edge of narrowband telephony. Note: espeak-ng 1.51 silently ignores a variant on "en-gb"
# ("en-gb+f3" gives byte-identical output to "en-gb"); use "en+f3" to try one.
declare -A voice=([de]=de [en]=en)   # en = British English
speed=150                            # words per minute (espeak-ng default: 175)

# What espeak-ng should say where it misreads the written text (the TSV keeps the correct spelling).
spoken() {  # lang text
  case "$1" in
    # Otherwise "PIN" is spelt out letter by letter, "Rautetaste" comes out as "Rau-tee-taste", the "ge" of
    # "stummgeschaltet" gets a full e, and "Wiederhören" is stressed on "hö" only.
    de) sed -e 's/\bPIN\b/Pinn/g' -e 's/Rautetaste/Raute-Taste/g' -e 's/stummgeschaltet/stumm-geschaltet/g' \
          -e 's/Wiederhören/Wieder-hören/g' <<<"$2" ;;
    # Otherwise "PIN" is spelt out letter by letter.
    en) sed -e 's/\bPIN\b/pin/g' <<<"$2" ;;
    *) printf '%s\n' "$2" ;;
  esac
}

for tool in espeak-ng sox; do
  command -v "$tool" >/dev/null ||
    { echo "make-prompts: $tool is missing (apt-get install espeak-ng sox)" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# sox options for every file written: no dither (deterministic, silence stays digital zero); mono 16 kHz
# 16-bit FLAC at the highest compression, without sox's "Processed by SoX" comment tag.
sox=(sox -D)
flac=(-r 16000 -c 1 -b 16 -C 8 --comment "")

# ---------------------------------------------------------------------------------------------------------------
# Spoken prompts
# ---------------------------------------------------------------------------------------------------------------
declare -A seen=() langs=() ids=()
n=0
while IFS=$'\t' read -r id lang text extra || [ -n "${id:-}" ]; do
  [[ -z "$id" || "$id" == \#* ]] && continue
  if [[ ! "$id" =~ ^[a-z0-9_]+$ || -z "${voice[$lang]:-}" || -z "$text" || -n "${extra:-}" ]]; then
    echo "make-prompts: bad line in prompts.tsv: $id	$lang	$text" >&2
    exit 1
  fi
  [ -z "${seen[$id/$lang]:-}" ] || { echo "make-prompts: $id/$lang appears twice in prompts.tsv" >&2; exit 1; }
  seen[$id/$lang]=1 langs[$lang]=1 ids[$id]=1
  mkdir -p "$tmp/$lang"
  spoken "$lang" "$text" | espeak-ng -b 1 -v "${voice[$lang]}" -s "$speed" --stdin --stdout >"$tmp/raw.wav"
  # Resample first, then trim silence at both ends (reverse to trim the end), normalise, add the tail.
  "${sox[@]}" "$tmp/raw.wav" "${flac[@]}" "$tmp/$lang/$id.flac" \
    rate -v 16k \
    silence 1 0.01 -50d reverse silence 1 0.01 -50d reverse \
    gain -n -3 \
    pad 0 0.15
  n=$((n + 1))
done <"$tsv"

for id in "${!ids[@]}"; do
  for lang in "${!langs[@]}"; do
    [ -n "${seen[$id/$lang]:-}" ] || { echo "make-prompts: $id has no $lang text in prompts.tsv" >&2; exit 1; }
  done
done

# ---------------------------------------------------------------------------------------------------------------
# Hold music: a slow arpeggio over Cmaj7 - Am7 - Fmaj7 - G (3 s each) on a soft sustained pad, with a little
# reverb. Everything that rings past the 12 s mark (the last pad fading out, note and reverb tails) is mixed back
# onto the start, so the file loops without a gap or a click.
# ---------------------------------------------------------------------------------------------------------------
loop=12
chord_len=3
step=0.375                   # 8 arpeggio notes per chord (eighth notes at 80 bpm)
f32=(-r 16000 -c 1 -b 32 -e floating-point)
chords=(
  "261.63 329.63 392.00 493.88 659.26"   # Cmaj7: C4 E4 G4 B4 E5
  "220.00 261.63 329.63 392.00 523.25"   # Am7:   A3 C4 E4 G4 C5
  "174.61 220.00 261.63 329.63 440.00"   # Fmaj7: F3 A3 C4 E4 A4
  "196.00 246.94 293.66 392.00 493.88"   # G:     G3 B3 D4 G4 B4
)
pattern=(0 1 2 3 4 3 2 1)    # up and down through the chord
mkdir -p "$tmp/music"
parts=()
for c in "${!chords[@]}"; do
  read -r -a tones <<<"${chords[$c]}"
  t0=$((c * chord_len))
  # Arpeggio: sine with a little triangle for warmth; soft 40 ms attack, long fade out.
  for i in "${!pattern[@]}"; do
    f=${tones[${pattern[$i]}]}
    start=$(awk -v a="$t0" -v i="$i" -v s="$step" 'BEGIN { printf "%.3f", a + i * s }')
    part="$tmp/music/n$c-$i.wav"
    sox -r 16000 -c 2 -n "${f32[@]}" "$part" synth 1.6 sine "$f" triangle "$f" remix 1v0.8,2v0.2 \
      fade q 0.04 1.6 1.5 vol 0.6 pad "$start"
    parts+=("$part")
  done
  # Pad: root an octave down and the third, triangle waves, 0.8 s swell in, 1.6 s fade that overlaps the next chord.
  bass=$(awk -v f="${tones[0]}" 'BEGIN { printf "%.2f", f / 2 }')
  part="$tmp/music/p$c.wav"
  sox -r 16000 -c 2 -n "${f32[@]}" "$part" synth 3.8 triangle "$bass" triangle "${tones[1]}" remix 1v0.5,2v0.3 \
    lowpass 1200 fade h 0.8 3.8 1.6 pad "$t0"
  parts+=("$part")
done
# Mix (sox -m scales each input by 1/n; the level is set at the end), add a small room.
sox -m "${parts[@]}" "${f32[@]}" "$tmp/music/mix.wav" reverb 30 50 60 pad 0 2
sox "$tmp/music/mix.wav" "${f32[@]}" "$tmp/music/head.wav" trim 0 "$loop"
sox "$tmp/music/mix.wav" "${f32[@]}" "$tmp/music/tail.wav" trim "$loop"
sox -m -v 1 "$tmp/music/head.wav" -v 1 "$tmp/music/tail.wav" "${f32[@]}" "$tmp/music/loop.wav"
# Background level: RMS -24 dBFS.
rms=$(sox "$tmp/music/loop.wav" -n stat 2>&1 | awk '/^RMS +amplitude/ { print $3 }')
gain=$(awk -v r="$rms" 'BEGIN { printf "%.2f", -24 - 20 * log(r) / log(10) }')
"${sox[@]}" "$tmp/music/loop.wav" "${flac[@]}" "$tmp/hold_music.flac" gain "$gain"

# ---------------------------------------------------------------------------------------------------------------
# Replace the old files only now that everything was generated (drops prompts no longer in the TSV).
# ---------------------------------------------------------------------------------------------------------------
mkdir -p "$out"
for lang in "${!langs[@]}"; do
  mkdir -p "$out/$lang"
  rm -f "$out/$lang"/*.flac
  mv "$tmp/$lang"/*.flac "$out/$lang/"
done
mv "$tmp/hold_music.flac" "$out/hold_music.flac"
echo "make-prompts: wrote $n prompts (${!langs[*]}) and hold_music.flac to ${out#"$root"/}"
