//! Detecting a launch by an MPI starter, without linking MPI.

/// Environment variables that MPI starters set in every process they launch,
/// each holding the number of processes: Open MPI's `mpirun`, MPICH's and
/// Intel MPI's Hydra (`mpiexec`), and Slurm's `srun` inside a job step.
pub const LAUNCHER_SIZE_VARIABLES: [&str; 3] =
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"];

/// The number of processes an MPI starter launched this process with, read
/// from [`LAUNCHER_SIZE_VARIABLES`] (the first one set and parseable), or
/// `None` when the process was started on its own.
///
/// Available without the `mpi` feature, so that a binary built without MPI
/// can refuse a distributed launch (`mpirun -np 4 mtl train …`) with a
/// clear error instead of running four independent copies of the job.
pub fn launcher_world_size() -> Option<usize> {
    LAUNCHER_SIZE_VARIABLES
        .iter()
        .find_map(|name| std::env::var(name).ok()?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_launcher_variable_set() {
        // The only test that touches these variables, so no other test races it.
        for name in LAUNCHER_SIZE_VARIABLES {
            std::env::remove_var(name);
        }
        assert_eq!(launcher_world_size(), None);
        std::env::set_var("PMI_SIZE", " 4 ");
        assert_eq!(launcher_world_size(), Some(4));
        std::env::set_var("OMPI_COMM_WORLD_SIZE", "3");
        assert_eq!(launcher_world_size(), Some(3));
        std::env::set_var("OMPI_COMM_WORLD_SIZE", "three");
        assert_eq!(launcher_world_size(), Some(4));
        for name in LAUNCHER_SIZE_VARIABLES {
            std::env::remove_var(name);
        }
    }
}
