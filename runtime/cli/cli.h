/* cli.h - amc's subcommands.
 *
 * Each subcommand lives in its own file (cli/cmd_<name>.c) and is called with
 * argv[0] being the subcommand's name. It returns the process exit status:
 *   0  success
 *   1  the command ran and found a problem (a rule error, a failed golden
 *      case, a sync failure)
 *   2  usage or input error (bad flags, unreadable or malformed input) */
#ifndef AMC_CLI_CLI_H
#define AMC_CLI_CLI_H

#define AMC_EXIT_OK 0
#define AMC_EXIT_FAIL 1
#define AMC_EXIT_USAGE 2

int amc_cmd_translate(int argc, char **argv);
int amc_cmd_rules(int argc, char **argv);
int amc_cmd_run(int argc, char **argv);
int amc_cmd_sync(int argc, char **argv);
int amc_cmd_version(int argc, char **argv);
int amc_cmd_mcp_dump(int argc, char **argv);
int amc_cmd_kube_dump(int argc, char **argv);

#endif
