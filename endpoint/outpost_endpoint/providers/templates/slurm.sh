#!/bin/bash
# Outpost block $job_name, written by the Slurm provider of outpost-endpoint.
#SBATCH --job-name=$job_name
#SBATCH --output=$stdout_path
#SBATCH --error=$stderr_path
#SBATCH --nodes=$nodes
#SBATCH --ntasks-per-node=$tasks_per_node
#SBATCH --time=$walltime
$optional_directives
$scheduler_options
export OUTPOST_BLOCK_JOB_NAME='$job_name'
umask 077
cd $run_dir

$worker_init

$command
