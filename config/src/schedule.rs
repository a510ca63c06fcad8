//! `[[schedule]]` tables: static cyclic schedules, one per physical CPU (ARINC 653 style).
//!
//! A schedule divides a repeating major frame into windows; within a window only its VM's vCPUs
//! run on the CPU. So that every window can actually be used, its VM must have a vCPU on that
//! CPU: it lists the CPU in `cpus`, and with vCPU n on `cpus[n % len(cpus)]` (see
//! [`crate::vcpu_cpu`]) one of its vCPUs lands there. Windows may be written in any order; they
//! are sorted by offset, and must neither overlap nor run past the end of the frame. Gaps
//! between windows are allowed.

use crate::error::{ConfigError, ErrorKind, ScheduleField, VmRef, WindowKey};
use crate::schema::RawSchedule;
use crate::time::micros;
use crate::{
    vcpu_cpu, CpuSchedule, Fields, ScheduleWindow, MAX_CPUS, MAX_MAJOR_FRAME_US, MIN_MAJOR_FRAME_US,
};

/// Checks every schedule against the (already checked) VMs. The result is sorted by CPU.
pub(crate) fn check(
    raw: &[RawSchedule],
    vms: &[Fields],
    file: &str,
) -> Result<Vec<CpuSchedule>, ConfigError> {
    let mut schedules: Vec<(usize, CpuSchedule)> = Vec::with_capacity(raw.len());
    for (index, schedule) in raw.iter().enumerate() {
        let error = |field, kind| ConfigError::schedule(file, index, field, kind);
        let cpu = match usize::try_from(schedule.cpu) {
            Ok(cpu) if cpu < MAX_CPUS => cpu,
            _ => {
                let kind = ErrorKind::CpuOutOfRange(schedule.cpu);
                return Err(error(ScheduleField::Cpu, kind));
            }
        };
        if let Some(&(first, _)) = schedules.iter().find(|(_, s)| s.cpu == cpu) {
            let kind = ErrorKind::ScheduleCpuDuplicate { cpu, first };
            return Err(error(ScheduleField::Cpu, kind));
        }
        let frame_us = micros(schedule.major_frame_ms)
            .map_err(|kind| error(ScheduleField::MajorFrameMs, kind))?;
        let frame_us = match u32::try_from(frame_us) {
            Ok(us) if (MIN_MAJOR_FRAME_US..=MAX_MAJOR_FRAME_US).contains(&us) => us,
            _ => {
                let kind = ErrorKind::MajorFrameOutOfRange(schedule.major_frame_ms);
                return Err(error(ScheduleField::MajorFrameMs, kind));
            }
        };
        let windows =
            windows(schedule, cpu, frame_us, vms).map_err(|(field, kind)| error(field, kind))?;
        schedules.push((
            index,
            CpuSchedule {
                cpu,
                major_frame_us: frame_us,
                windows,
            },
        ));
    }
    let mut schedules: Vec<CpuSchedule> = schedules.into_iter().map(|(_, s)| s).collect();
    schedules.sort_by_key(|schedule| schedule.cpu);
    Ok(schedules)
}

/// Checks one schedule's windows and returns them sorted by offset.
fn windows(
    schedule: &RawSchedule,
    cpu: usize,
    frame_us: u32,
    vms: &[Fields],
) -> Result<Vec<ScheduleWindow>, (ScheduleField, ErrorKind)> {
    if schedule.windows.is_empty() {
        return Err((ScheduleField::Windows, ErrorKind::WindowsEmpty));
    }
    // (index as written, window), sorted below.
    let mut windows: Vec<(usize, ScheduleWindow)> = Vec::with_capacity(schedule.windows.len());
    for (index, window) in schedule.windows.iter().enumerate() {
        let field = |key| ScheduleField::Window { index, key };
        let Some(vm) = vms.iter().position(|vm| vm.name == window.vm) else {
            let kind = ErrorKind::UnknownVm(window.vm.clone());
            return Err((field(Some(WindowKey::Vm)), kind));
        };
        let fields = &vms[vm];
        let vm_ref = || VmRef {
            index: vm,
            name: fields.name.clone(),
        };
        if !fields.cpus.contains(&cpu) {
            let kind = ErrorKind::VmNotOnCpu { vm: vm_ref(), cpu };
            return Err((field(Some(WindowKey::Vm)), kind));
        }
        if !(0..fields.vcpus).any(|vcpu| vcpu_cpu(&fields.cpus, vcpu) == cpu) {
            let kind = ErrorKind::NoVcpuOnCpu {
                vm: vm_ref(),
                cpu,
                vcpus: fields.vcpus,
            };
            return Err((field(Some(WindowKey::Vm)), kind));
        }
        let offset_us =
            micros(window.offset_ms).map_err(|kind| (field(Some(WindowKey::OffsetMs)), kind))?;
        let length_us =
            micros(window.length_ms).map_err(|kind| (field(Some(WindowKey::LengthMs)), kind))?;
        if length_us == 0 {
            return Err((
                field(Some(WindowKey::LengthMs)),
                ErrorKind::WindowLengthZero,
            ));
        }
        let end_us = offset_us.saturating_add(length_us);
        // Within the frame (itself a u32), so both fit in u32.
        let in_frame = |us: u64| u32::try_from(us).ok().filter(|&us| us <= frame_us);
        let (Some(start), Some(end)) = (in_frame(offset_us), in_frame(end_us)) else {
            let kind = ErrorKind::WindowOutsideFrame {
                start_us: offset_us,
                end_us,
                frame_us: frame_us.into(),
            };
            return Err((field(None), kind));
        };
        windows.push((
            index,
            ScheduleWindow {
                vm,
                offset_us: start,
                length_us: end - start,
            },
        ));
    }

    windows.sort_by_key(|(_, window)| window.offset_us);
    // Sorted by start, any overlap shows up between neighbours.
    for next in 1..windows.len() {
        let (a_index, a) = windows[next - 1];
        let (b_index, b) = windows[next];
        if b.offset_us < a.offset_us + a.length_us {
            let range =
                |w: ScheduleWindow| (u64::from(w.offset_us), u64::from(w.offset_us + w.length_us));
            // Blame the one written later, naming the other.
            let (blamed, blamed_window, other, other_window) = if a_index > b_index {
                (a_index, a, b_index, b)
            } else {
                (b_index, b, a_index, a)
            };
            let kind = ErrorKind::WindowsOverlap {
                range_us: range(blamed_window),
                other,
                other_range_us: range(other_window),
            };
            let field = ScheduleField::Window {
                index: blamed,
                key: None,
            };
            return Err((field, kind));
        }
    }
    Ok(windows.into_iter().map(|(_, window)| window).collect())
}
