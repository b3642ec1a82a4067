#!/bin/bash
# Outpost block $job_name, written by the PBS Pro provider of outpost-endpoint.
#PBS -N $job_name
#PBS -S /bin/bash
#PBS -o $stdout_path
#PBS -e $stderr_path
#PBS -l walltime=$walltime
#PBS -l select=$select
#PBS -l place=$place
$optional_directives
$scheduler_options
export OUTPOST_BLOCK_JOB_NAME='$job_name'
umask 077
cd $run_dir

$worker_init

$command
