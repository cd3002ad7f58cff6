import { describe, expect, it } from 'vitest';
import { BOOT_ENTRYPOINT, bootScript, imageBoot, splitInitCommand } from '../../src/compute/proxmox/boot.ts';

/**
 * Init commands and a working directory on Proxmox go through the image's
 * shell (src/compute/proxmox/boot.ts); the simulator runs them for real in
 * test/compute.proxmox-workloads.test.ts. Here: what the driver writes.
 */
describe('the Proxmox boot script', () => {
  it('changes directory, runs init once, then execs the workload, every word quoted', () => {
    expect(bootScript('/srv/my app', [['/bin/web', '--install', "it's"]], ['/bin/web', '--port', '80'])).toBe(
      "unset AIQSO_BOOT AIQSO_IMAGE_CMD; cd '/srv/my app' || exit 1; " +
        `if [ ! -e /.aiqso-init-done ]; then echo "aiqso: init: "'/bin/web --install it'\\''s'; ` +
        `'/bin/web' '--install' 'it'\\''s' || { echo "aiqso: init command failed ($?): "'/bin/web --install it'\\''s'; exit 1; }; ` +
        ': >/.aiqso-init-done; fi; ' +
        "exec '/bin/web' '--port' '80'",
    );
    expect(bootScript(undefined, [], ['/bin/web'])).toBe("unset AIQSO_BOOT AIQSO_IMAGE_CMD; exec '/bin/web'");
    expect(() => bootScript(undefined, [['/bin/web', 'a\nb']], ['/bin/web'])).toThrow(/control character/);
  });

  it("keeps the image's own command across updates and gives it back when no longer needed", () => {
    const image = "/bin/busybox httpd -f -h '/www root'";
    expect(splitInitCommand(image)).toEqual(['/bin/busybox', 'httpd', '-f', '-h', '/www root']);
    const first = imageBoot({ kind: 'image', image: 'r/x:1', init: [['/bin/true']] }, undefined, {
      entrypoint: image,
      env: {},
    });
    expect(first.entrypoint).toBe(BOOT_ENTRYPOINT);
    expect(first.env.AIQSO_IMAGE_CMD).toBe(image);
    expect(first.env.AIQSO_BOOT).toMatch(/exec '\/bin\/busybox' 'httpd' '-f' '-h' '\/www root'$/);
    // Updated again: the entrypoint is the boot script now, the image's command comes from the env.
    const again = imageBoot({ kind: 'image', image: 'r/x:1', workdir: '/www' }, undefined, {
      entrypoint: BOOT_ENTRYPOINT,
      env: first.env,
    });
    expect(again.env.AIQSO_IMAGE_CMD).toBe(image);
    expect(again.env.AIQSO_BOOT).toMatch(/^unset AIQSO_BOOT AIQSO_IMAGE_CMD; cd '\/www' \|\| exit 1; exec /);
    const plain = imageBoot({ kind: 'image', image: 'r/x:1' }, undefined, {
      entrypoint: BOOT_ENTRYPOINT,
      env: again.env,
    });
    expect(plain).toEqual({ entrypoint: image, env: {}, drop: ['AIQSO_BOOT', 'AIQSO_IMAGE_CMD'] });
    // Never booted through the script: nothing changes.
    expect(
      imageBoot({ kind: 'image', image: 'r/x:1' }, undefined, { entrypoint: image, env: {} }).entrypoint,
    ).toBe(undefined);
  });
});
