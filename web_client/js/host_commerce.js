export class HostCommerce {
  constructor(opts) { Object.assign(this, opts); }
  start() {}
  refresh() {}
}
