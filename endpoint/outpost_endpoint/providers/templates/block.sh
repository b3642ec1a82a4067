#!/bin/bash
# Outpost block $job_name, written by the $scheduler provider of outpost-endpoint.
$directives
$scheduler_options
export OUTPOST_BLOCK_JOB_NAME='$job_name'
umask 077
cd $run_dir

$worker_init

$command
