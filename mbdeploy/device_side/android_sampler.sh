#!/bin/sh
# mbdeploy power/thermal sampler: POSIX sh for Android's toybox sh, busybox and Linux sh.
#
#   sh android_sampler.sh OUT marker MARKER_FILE [INTERVAL_S [MAX_SAMPLES]]   sample while MARKER_FILE exists
#   sh android_sampler.sh OUT for_cs CENTISECONDS [INTERVAL_S [MAX_SAMPLES]]  sample for a fixed time
#
# MAX_SAMPLES (default 100000) caps OUT: the sampler stops once it wrote that
# many samples, whatever happens to the marker. The host also starts it under
# `timeout` (a deadline from the run's limits) and records its pid.
#
# Writes OUT (one record per line, parsed on the host by mbdeploy/android_power.py):
#   # mbdeploy-sampler 1
#   zone INDEX TYPE                    once per thermal zone
#   status START|END N                 `dumpsys thermalservice` Thermal Status
#   b UPTIME_S CURRENT_NOW VOLTAGE_NOW battery, every INTERVAL_S (default 0.05 s: 20 Hz)
#   t UPTIME_S INDEX MILLIDEG          thermal zones, every 10th battery sample
#   end UPTIME_S SAMPLES
# then OUT.rails (Pixel power rails over the run, when the HAL exists) and
# OUT.done last, so the host knows OUT is whole.
# Reads $MBDEPLOY_SYSFS instead of /sys when set (the adb test device's stand-in).

out=$1
mode=$2
arg=$3
interval=${4:-0.05}
max_samples=${5:-100000}
sys=${MBDEPLOY_SYSFS:-/sys}
bat=$sys/class/power_supply/battery
rails=android.hardware.power.stats.IPowerStats/default

rm -f "$out" "$out.done" "$out.rails"

uptime_s() {
  read -r up _ < /proc/uptime
}

thermal_status() {
  s=$(dumpsys thermalservice 2>/dev/null | sed -n 's/^Thermal Status: *\([0-9]*\).*/\1/p')
  echo "status $1 ${s:-NA}" >> "$out"
}

{
  echo "# mbdeploy-sampler 1"
  for z in "$sys"/class/thermal/thermal_zone*; do
    [ -r "$z/temp" ] || continue
    type=NA
    { read -r type < "$z/type"; } 2>/dev/null
    echo "zone ${z##*thermal_zone} $type"
  done
} > "$out"
thermal_status START

have_rails=0
if dumpsys "$rails" delta > /dev/null 2>&1 && ! dumpsys "$rails" 2>/dev/null | grep -q "Can't find service"; then
  have_rails=1
fi

uptime_s
start=$up
end_cs=0
if [ "$mode" = for_cs ]; then
  end_cs=$(( ${start%.*}${start#*.} + arg ))
fi

n=0
while :; do
  if [ "$mode" = marker ]; then
    [ -f "$arg" ] || break
  fi
  [ "$n" -lt "$max_samples" ] || break
  uptime_s
  if [ "$mode" = for_cs ] && [ "${up%.*}${up#*.}" -ge "$end_cs" ]; then
    break
  fi
  c=NA
  v=NA
  { read -r c < "$bat/current_now"; } 2>/dev/null
  { read -r v < "$bat/voltage_now"; } 2>/dev/null
  echo "b $up $c $v" >> "$out"
  if [ $((n % 10)) -eq 0 ]; then
    for z in "$sys"/class/thermal/thermal_zone*; do
      t=NA
      { read -r t < "$z/temp"; } 2>/dev/null
      echo "t $up ${z##*thermal_zone} $t" >> "$out"
    done
  fi
  n=$((n + 1))
  sleep "$interval"
done

thermal_status END
[ "$have_rails" = 1 ] && dumpsys "$rails" delta > "$out.rails" 2>/dev/null
uptime_s
echo "end $up $n" >> "$out"
: > "$out.done"
