"""Problems residents report, for tests and benchmarks that file many distinct reports."""

PROBLEMS = [
    "井盖松了",
    "路灯不亮了",
    "垃圾好几天没人清运",
    "楼道灯坏了",
    "有人飞线充电",
    "下水道堵了",
    "电梯坏了",
    "装修噪音太大",
    "狗屎没人清",
    "树枝挡住窗户了",
]
