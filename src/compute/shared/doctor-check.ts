/**
 * One line of `aiqso doctor`. `warning`: in force only in part, with the
 * reason (doctor still exits 0); `missing` and `failed` make it exit 1.
 */
export interface DoctorCheck {
  part: string;
  status: 'ok' | 'warning' | 'missing' | 'failed' | 'not used';
  detail: string;
  /** The command or setting that fixes a missing or failed part. */
  fix?: string;
}
